/** @jsxImportSource preact */
import type { Signal } from "@preact/signals";
import { ModalDialog } from "./modal_dialog.tsx";

/** Asks how to leave: stop or suspend the appliances. */
export function ConfirmLogout(
  { busy, error, onLogOut, onCancel }: {
    busy: Signal<boolean>;
    error: Signal<string | null>;
    onLogOut(suspend: boolean): void;
    onCancel(): void;
  },
) {
  return (
    <ModalDialog
      id="logout"
      title="Log out?"
      onCancel={onCancel}
      actions={
        <>
          <button type="button" onClick={onCancel}>Cancel</button>
          <button type="button" disabled={busy} onClick={() => onLogOut(true)}>
            Suspend and log out
          </button>
          <button type="button" disabled={busy} onClick={() => onLogOut(false)}>
            Shut down and log out
          </button>
        </>
      }
    >
      <p>
        Your running appliances are suspended (they resume where they were at your next login) or
        shut down. Your changes keep uploading; the login screen says when it is safe to leave.
      </p>
      {error.value && <p class="error" role="alert">{error}</p>}
    </ModalDialog>
  );
}

/** Changes the password: the current one, and the new one twice. */
export function ChangePassword(
  { busy, error, done, onChange, onCancel }: {
    busy: Signal<boolean>;
    error: Signal<string | null>;
    done: Signal<boolean>;
    onChange(old: string, fresh: string, again: string): void;
    onCancel(): void;
  },
) {
  return (
    <ModalDialog
      id="password"
      title="Change password"
      onCancel={onCancel}
      actions={done.value ? <button type="button" onClick={onCancel}>Close</button> : (
        <>
          <button type="button" onClick={onCancel}>Cancel</button>
          <button type="submit" form="password-form" disabled={busy}>Change password</button>
        </>
      )}
    >
      {done.value
        ? (
          <p role="status">
            Your password is changed. Other VATs take the new one when they next reach the
            directory; offline, they still take the old one.
          </p>
        )
        : (
          <form
            id="password-form"
            class="dialog-form"
            onSubmit={(e) => {
              e.preventDefault();
              const d = new FormData(e.currentTarget);
              onChange(String(d.get("old")), String(d.get("new")), String(d.get("again")));
            }}
          >
            <label for="pw-old">Current password</label>
            <input
              id="pw-old"
              name="old"
              type="password"
              autocomplete="current-password"
              required
            />
            <label for="pw-new">New password</label>
            <input id="pw-new" name="new" type="password" autocomplete="new-password" required />
            <label for="pw-again">New password again</label>
            <input
              id="pw-again"
              name="again"
              type="password"
              autocomplete="new-password"
              required
            />
          </form>
        )}
      {error.value && <p class="error" role="alert">{error}</p>}
    </ModalDialog>
  );
}

/** Makes a new recovery key and shows it once. */
export function ShowRecovery(
  { busy, error, recoveryKey, onMake, onCancel }: {
    busy: Signal<boolean>;
    error: Signal<string | null>;
    recoveryKey: Signal<string | null>;
    onMake(password: string): void;
    onCancel(): void;
  },
) {
  return (
    <ModalDialog
      id="recovery"
      title="Recovery key"
      onCancel={onCancel}
      actions={recoveryKey.value
        ? <button type="button" onClick={onCancel}>I wrote it down</button>
        : (
          <>
            <button type="button" onClick={onCancel}>Cancel</button>
            <button type="submit" form="recovery-form" disabled={busy}>
              Make a new recovery key
            </button>
          </>
        )}
    >
      {recoveryKey.value
        ? (
          <>
            <p>Write this down and keep it safe; it is shown only now:</p>
            <p class="recovery-key" data-testid="recovery-key">
              <code>{recoveryKey}</code>
            </p>
            <p>
              With it you can set a new password if you forget yours. The old key no longer works.
            </p>
          </>
        )
        : (
          <form
            id="recovery-form"
            class="dialog-form"
            onSubmit={(e) => {
              e.preventDefault();
              onMake(String(new FormData(e.currentTarget).get("password")));
            }}
          >
            <p>
              Your recovery key cannot be shown again; you can make a new one, which replaces it.
            </p>
            <label for="rk-password">Your password</label>
            <input
              id="rk-password"
              name="password"
              type="password"
              autocomplete="current-password"
              required
            />
          </form>
        )}
      {error.value && <p class="error" role="alert">{error}</p>}
    </ModalDialog>
  );
}
