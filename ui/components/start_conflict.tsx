/** @jsxImportSource preact */
import type { StartChoice } from "../models/appliances.ts";
import { ModalDialog } from "./modal_dialog.tsx";

/** Props of `StartConflict`. */
export interface StartConflictProps {
  name: string;
  /** The VAT that holds the subscription, as the daemon names it. */
  holder: string;
  onChoose(choice: StartChoice): void;
  onCancel(): void;
}

/** A start refused because another VAT holds the subscription: the user's two ways on. */
export function StartConflict({ name, holder, onChoose, onCancel }: StartConflictProps) {
  return (
    <ModalDialog
      id="conflict"
      title={`${name} is in use on another VAT`}
      onCancel={onCancel}
      actions={
        <>
          <button type="button" onClick={onCancel}>Don't start</button>
          <button type="button" onClick={() => onChoose("takeOver")}>Take over here</button>
          <button type="button" onClick={() => onChoose("fork")}>Continue in a fork</button>
        </>
      }
    >
      <p>
        Another VAT ({holder}) holds {name}'s subscription. Stop it there first, or choose:
      </p>
      <dl>
        <dt>Take over here</dt>
        <dd>
          This VAT holds{" "}
          {name}'s subscription from now on, and the other VAT keeps the changes it has not uploaded
          yet as a separate fork.
        </dd>
        <dt>Continue in a fork</dt>
        <dd>
          This VAT continues {name}{" "}
          in a new subscription of its own, and the other VAT keeps the original.
        </dd>
      </dl>
    </ModalDialog>
  );
}
