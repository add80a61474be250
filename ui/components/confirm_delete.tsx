/** @jsxImportSource preact */
import { ModalDialog } from "./modal_dialog.tsx";
import type { ApplianceStatus } from "../api.ts";
import { formatBytes } from "../format.ts";

/** Props of `ConfirmDelete`. */
export interface ConfirmDeleteProps {
  name: string;
  /** What is backed up of it (null: unknown). */
  backup: ApplianceStatus["backup"] | null;
  onConfirm(): void;
  onCancel(): void;
}

/** Asks before deleting, naming what is lost; "Keep" (the safe choice) has the focus. */
export function ConfirmDelete({ name, backup, onConfirm, onCancel }: ConfirmDeleteProps) {
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
      {backup?.enabled && backup.lastVersion !== null
        ? (
          <p>
            This removes {name}{" "}
            from this PC: its user disk here, its ephemeral disk and any suspended session. Its
            backed-up versions (the newest is version{" "}
            {backup.lastVersion}) stay in your data repository. {backup.pendingBytes > 0 && (
              <strong>
                {formatBytes(backup.pendingBytes)}{" "}
                of changes are not backed up yet and would be lost: wait for the backup first.
              </strong>
            )}
          </p>
        )
        : (
          <p>
            This destroys{" "}
            {name}'s user disk — every file saved in it — along with its ephemeral disk and any
            suspended session. The published versions in its repository stay.
          </p>
        )}
    </ModalDialog>
  );
}
