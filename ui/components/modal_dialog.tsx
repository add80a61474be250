/** @jsxImportSource preact */
import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

/** Props of `ModalDialog`. */
export interface ModalDialogProps {
  /** Prefix of the ids of its title and text. */
  id: string;
  title: ComponentChildren;
  /** What the question means (the dialog's description). */
  children: ComponentChildren;
  /** Its buttons; the first, which gets the focus, should be the safe choice. */
  actions: ComponentChildren;
  /** "danger": a choice that loses something. */
  tone?: "danger" | "question";
  onCancel(): void;
}

/**
 * A question the page waits for: a modal dialog that keeps the keyboard (Tab and
 * Shift+Tab cycle its buttons), gives the first button the focus, cancels on Escape, and
 * when it goes returns the focus to where it was (the button that asked).
 */
export function ModalDialog(
  { id, title, children, actions, tone = "question", onCancel }: ModalDialogProps,
) {
  const dialog = useRef<HTMLDialogElement>(null);
  const buttons = () => [
    ...dialog.current?.querySelectorAll<HTMLButtonElement>("button:not(:disabled)") ?? [],
  ];
  useEffect(() => {
    const opener = document.activeElement as HTMLElement | null;
    const el = dialog.current;
    el?.showModal();
    buttons()[0]?.focus();
    return () => {
      el?.close();
      // The opener may be gone (its appliance was deleted): then the page's heading.
      if (opener?.isConnected) opener.focus();
      else document.querySelector<HTMLElement>("h1 a")?.focus();
    };
  }, []);
  return (
    <dialog
      ref={dialog}
      class={`confirm ${tone}`}
      role="alertdialog"
      aria-modal="true"
      aria-labelledby={`${id}-title`}
      aria-describedby={`${id}-text`}
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
        const all = buttons();
        const [first, last] = [all[0], all.at(-1)];
        if (e.shiftKey && document.activeElement === first) {
          e.preventDefault();
          last?.focus();
        } else if (!e.shiftKey && document.activeElement === last) {
          e.preventDefault();
          first?.focus();
        }
      }}
    >
      <h2 id={`${id}-title`}>{title}</h2>
      <div id={`${id}-text`}>{children}</div>
      <div class="actions">{actions}</div>
    </dialog>
  );
}
