/** @jsxImportSource preact */
import type { OperationProgress } from "../../vat/progress.ts";
import { formatBytes, formatSeconds, percent } from "../format.ts";

/** What each kind of long operation is called on screen. */
const _TITLES: Record<string, string> = {
  hoard: "Fetching for offline use",
  publish: "Publishing the system disk",
  trace: "Replaying the boot trace",
  prefetch: "Prefetching",
  backup: "Backing up the user disk",
};

/** The words of one operation's progress: "12.0 MiB of 72.0 MiB, 2.0 MiB/s, 30 s left". */
export function progressText(op: OperationProgress): string {
  const amount = `${formatBytes(op.doneBytes)} of ${formatBytes(op.totalBytes)}`;
  if (op.rateBytesPerSecond === 0 || op.secondsLeft === null) {
    return `${amount}, working out the time left`;
  }
  return `${amount}, ${formatBytes(op.rateBytesPerSecond)}/s, ${
    formatSeconds(op.secondsLeft)
  } left`;
}

/** Props of `OperationsProgress`. */
export interface OperationsProgressProps {
  /** Whose operations (for the labels). */
  name: string;
  operations: OperationProgress[];
}

/** A progress bar for each long operation under way, whatever its kind. */
export function OperationsProgress({ name, operations }: OperationsProgressProps) {
  if (operations.length === 0) return null;
  return (
    <ul class="operations" aria-label={`${name}'s long operations`}>
      {operations.map((op, i) => {
        const title = _TITLES[op.kind] ?? op.kind;
        const text = progressText(op);
        const id = `op-${name}-${op.kind}-${i}`;
        return (
          <li key={`${op.kind}-${i}`} class="operation" data-kind={op.kind}>
            <span id={id} class="operation-title">{title}</span>
            <div
              class="bar"
              role="progressbar"
              aria-labelledby={id}
              aria-valuemin={0}
              aria-valuemax={op.totalBytes}
              aria-valuenow={op.doneBytes}
              aria-valuetext={`${percent(op.doneBytes, op.totalBytes)}%: ${text}`}
            >
              <div class="bar-fill" style={{ width: `${percent(op.doneBytes, op.totalBytes)}%` }} />
            </div>
            <span class="operation-text muted">
              {percent(op.doneBytes, op.totalBytes)}% · {text}
            </span>
          </li>
        );
      })}
    </ul>
  );
}
