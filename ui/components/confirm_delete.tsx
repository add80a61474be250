/** @jsxImportSource preact */
import { ModalDialog } from "./modal_dialog.tsx";

/** Props of `ConfirmDelete`. */
export interface ConfirmDeleteProps {
  name: string;
  onConfirm(): void;
  onCancel(): void;
}

/** Asks before deleting, naming what is lost; "Keep" (the safe choice) has the focus. */
export function ConfirmDelete({ name, onConfirm, onCancel }: ConfirmDeleteProps) {
  return (
    <ModalDialog
      key={name}
      id="confirm"
      tone="danger"
      title={`Delete ${name}?`}
      onCancel={onCancel}
      actions={
        <>
          <button type="button" onClick={onCancel}>Keep {name}</button>
          <button type="button" class="danger" onClick={onConfirm}>
            Delete {name} and its data
          </button>
        </>
      }
    >
      <p>
        This destroys{" "}
        {name}'s user disk — every file saved in it — along with its ephemeral disk and any
        suspended session. The published versions in its repository stay.
      </p>
    </ModalDialog>
  );
}
