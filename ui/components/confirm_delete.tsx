/** @jsxImportSource preact */
import { useEffect, useRef } from "preact/hooks";

/** Props of `ConfirmDelete`. */
export interface ConfirmDeleteProps {
  name: string;
  onConfirm(): void;
  onCancel(): void;
}

/** Asks before deleting, naming what is lost; Escape or "Keep" cancels. */
export function ConfirmDelete({ name, onConfirm, onCancel }: ConfirmDeleteProps) {
  // The safe choice gets the keyboard's focus when the question appears.
  const keep = useRef<HTMLButtonElement>(null);
  useEffect(() => keep.current?.focus(), [name]);
  return (
    <div
      class="confirm"
      role="alertdialog"
      aria-labelledby="confirm-title"
      aria-describedby="confirm-text"
      onKeyDown={(e) => e.key === "Escape" && onCancel()}
    >
      <h2 id="confirm-title">Delete {name}?</h2>
      <p id="confirm-text">
        This destroys{" "}
        {name}'s user disk — every file saved in it — along with its ephemeral disk and any
        suspended session. The published versions in its repository stay.
      </p>
      <div class="actions">
        <button type="button" onClick={onCancel} ref={keep}>Keep {name}</button>
        <button type="button" class="danger" onClick={onConfirm}>Delete {name} and its data</button>
      </div>
    </div>
  );
}
