/** @jsxImportSource preact */
import { useEffect, useRef } from "preact/hooks";

/** Props of `ConfirmDelete`. */
export interface ConfirmDeleteProps {
  name: string;
  onConfirm(): void;
  onCancel(): void;
}

/**
 * Asks before deleting, naming what is lost. A modal dialog: the keyboard stays in it
 * (Tab cycles its two buttons), Escape or "Keep" cancels, and when it goes the focus
 * returns to where it was (the "Delete…" button).
 */
export function ConfirmDelete({ name, onConfirm, onCancel }: ConfirmDeleteProps) {
  const dialog = useRef<HTMLDialogElement>(null);
  const keep = useRef<HTMLButtonElement>(null);
  const remove = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    const opener = document.activeElement as HTMLElement | null;
    const el = dialog.current;
    el?.showModal();
    // The safe choice gets the keyboard's focus when the question appears.
    keep.current?.focus();
    return () => {
      el?.close();
      // The opener may be gone (the appliance was deleted): then the page's heading.
      if (opener?.isConnected) opener.focus();
      else document.querySelector<HTMLElement>("h1 a")?.focus();
    };
  }, [name]);
  return (
    <dialog
      ref={dialog}
      class="confirm"
      role="alertdialog"
      aria-modal="true"
      aria-labelledby="confirm-title"
      aria-describedby="confirm-text"
      onCancel={(e) => {
        // Another close request than Escape (a phone's Back): the model decides.
        e.preventDefault();
        onCancel();
      }}
      onKeyDown={(e) => {
        if (e.key === "Escape") {
          // Handled here: the browser may refuse to let the cancel event stop its own
          // closing of the dialog (without a user activation), and that races the model.
          e.preventDefault();
          onCancel();
          return;
        }
        if (e.key !== "Tab") return;
        const [first, last] = [keep.current, remove.current];
        if (e.shiftKey && document.activeElement === first) {
          e.preventDefault();
          last?.focus();
        } else if (!e.shiftKey && document.activeElement === last) {
          e.preventDefault();
          first?.focus();
        }
      }}
    >
      <h2 id="confirm-title">Delete {name}?</h2>
      <p id="confirm-text">
        This destroys{" "}
        {name}'s user disk — every file saved in it — along with its ephemeral disk and any
        suspended session. The published versions in its repository stay.
      </p>
      <div class="actions">
        <button type="button" onClick={onCancel} ref={keep}>Keep {name}</button>
        <button type="button" class="danger" onClick={onConfirm} ref={remove}>
          Delete {name} and its data
        </button>
      </div>
    </dialog>
  );
}
