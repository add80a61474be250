/** @jsxImportSource preact */
import type { Signal } from "@preact/signals";

/** Props of `SignInScreen`. */
export interface SignInScreenProps {
  error: Signal<string | null>;
  busy: Signal<boolean>;
  onSignIn(token: string): void;
}

/** Asks for the daemon's token (or its sign-in URL) when the browser has no session. */
export function SignInScreen({ error, busy, onSignIn }: SignInScreenProps) {
  return (
    <main class="signin">
      <h1>Sign in to the VAT</h1>
      <p>
        Open the sign-in URL that the vat daemon printed when it started, or paste it (or the token
        from the state directory's <code>token</code> file) here.
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const data = new FormData(e.currentTarget);
          onSignIn(String(data.get("token") ?? ""));
        }}
      >
        <label for="token">Sign-in URL or access token</label>
        <input id="token" name="token" type="password" autocomplete="off" required autofocus />
        <button type="submit" disabled={busy}>Sign in</button>
      </form>
      {error.value && <p class="error" role="alert">{error}</p>}
    </main>
  );
}
