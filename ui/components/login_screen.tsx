/** @jsxImportSource preact */
import type { Signal } from "@preact/signals";
import { useState } from "preact/hooks";
import { formatBytes } from "../format.ts";

/** Props of `LoginScreen`. */
export interface LoginScreenProps {
  error: Signal<string | null>;
  busy: Signal<boolean>;
  /** false when the directory does not answer: the password last used here works. */
  reachable: boolean;
  /** The user who just logged out here, while their changes upload. */
  leaving: { name: string; pendingBytes: number; safe: boolean } | null;
  onLogIn(name: string, password: string): void;
}

/** The VAT's login window (the paper's §2.3): name and password. */
export function LoginScreen({ error, busy, reachable, leaving, onLogIn }: LoginScreenProps) {
  const [capsLock, setCapsLock] = useState(false);
  const caps = (e: KeyboardEvent) => setCapsLock(e.getModifierState?.("CapsLock") ?? false);
  return (
    <main class="signin login">
      {leaving && (
        <p class={leaving.safe ? "safe-to-leave" : "still-uploading"} role="status">
          {leaving.safe
            ? `${leaving.name} logged out. Safe to leave: every change is backed up.`
            : `${leaving.name} logged out. Backing up ${
              formatBytes(leaving.pendingBytes)
            } more; please wait before you switch off or leave.`}
        </p>
      )}
      <h1>Log in</h1>
      {!reachable && (
        <p class="offline-note" role="note">
          Offline: using the password last used on this VAT.
        </p>
      )}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const data = new FormData(e.currentTarget);
          onLogIn(String(data.get("name") ?? "").trim(), String(data.get("password") ?? ""));
        }}
      >
        <label for="login-name">Name</label>
        <input
          id="login-name"
          name="name"
          autocomplete="username"
          autocapitalize="none"
          spellcheck={false}
          required
          autofocus
        />
        <label for="login-password">Password</label>
        <input
          id="login-password"
          name="password"
          type="password"
          autocomplete="current-password"
          required
          onKeyDown={caps}
          onKeyUp={caps}
          aria-describedby="caps-lock"
        />
        <p id="caps-lock" class="caps-lock" role="status">{capsLock ? "Caps Lock is on" : ""}</p>
        <button type="submit" disabled={busy}>{busy.value ? "Logging in…" : "Log in"}</button>
      </form>
      {error.value && <p class="error" role="alert">{error}</p>}
    </main>
  );
}
