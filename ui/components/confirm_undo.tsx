/** @jsxImportSource preact */
import type { SnapshotEntry } from "../api.ts";
import { ModalDialog } from "./modal_dialog.tsx";

/** Props of `ConfirmUndo`. */
export interface ConfirmUndoProps {
  name: string;
  /** The version to go back to. */
  entry: SnapshotEntry;
  onConfirm(): void;
  onCancel(): void;
}

/** Asks before an undo, saying what it does and that nothing is deleted. */
export function ConfirmUndo({ name, entry, onConfirm, onCancel }: ConfirmUndoProps) {
  const taken = new Date(entry.takenAt).toLocaleString();
  return (
    <ModalDialog
      id="undo"
      title={`Undo ${name} to version ${entry.version}?`}
      onCancel={onCancel}
      actions={
        <>
          <button type="button" onClick={onCancel}>Cancel</button>
          <button type="button" onClick={onConfirm}>Undo to version {entry.version}</button>
        </>
      }
    >
      <p>
        {name}'s user disk becomes what it was in version {entry.version}, taken {taken}.
      </p>
      <p>
        Nothing is deleted: the disk as it is now is backed up first and stays in the list, so you
        can undo this undo too.
      </p>
    </ModalDialog>
  );
}
