/** @jsxImportSource preact */
import type { ApplianceStatus } from "../api.ts";
import type { Operation } from "../models/appliances.ts";

/** Props of `ApplianceCard`. */
export interface ApplianceCardProps {
  appliance: ApplianceStatus;
  /** The operation under way, if any. */
  pending?: string;
  /** Where the name links to (none on the appliance's own page). */
  href?: string;
  onOperate(name: string, op: Operation): void;
  onDelete(name: string): void;
}

function _version(a: ApplianceStatus): string {
  const current = a.runningVersion ?? a.suspendedVersion;
  const latest = a.latestVersion === null ? "repository unreachable" : `latest v${a.latestVersion}`;
  return current === null ? latest : `v${current} (${latest})`;
}

function _mib(bytes: number): string {
  return (bytes / 1048576).toFixed(1);
}

/** One appliance: what it is, its state, and its operations. */
export function ApplianceCard(
  { appliance: a, pending, href, onOperate, onDelete }: ApplianceCardProps,
) {
  const busy = pending !== undefined || ["starting", "stopping", "suspending"].includes(a.state);
  const running = a.state === "running";
  const button = (op: Operation, label: string, enabled: boolean) => (
    <button
      type="button"
      disabled={busy || !enabled}
      onClick={() => onOperate(a.name, op)}
    >
      {label}
    </button>
  );
  return (
    <article class="appliance" aria-labelledby={`name-${a.name}`}>
      <header>
        <h2 id={`name-${a.name}`}>{href ? <a href={href}>{a.name}</a> : a.name}</h2>
        <span class={`state state-${a.state}`} data-testid="state">{pending ?? a.state}</span>
      </header>
      <p class="version">{_version(a)}</p>
      {a.updateRequired && <p class="badge required">update required</p>}
      {a.updateAvailable && !a.updateRequired && <p class="badge update">update available</p>}
      {a.offline && <p class="badge offline">offline</p>}
      {a.safeOffline
        ? <p class="badge safe-offline">safe offline</p>
        : a.hoarded && a.totalBytes !== null && (
          <p class="badge hoarding">
            {a.hoarding ? "hoarding" : "hoarded"}: {_mib(a.cachedBytes ?? 0)} of{" "}
            {_mib(a.totalBytes)} MiB cached
          </p>
        )}
      {a.operations.filter((op) => op.kind !== "hoard").map((op) => (
        <p class={`badge operation-${op.kind}`} key={op.kind}>
          {op.kind === "trace" ? "boot trace" : op.kind}: {_mib(op.doneBytes)} of{" "}
          {_mib(op.totalBytes)} MiB
          {op.rateBytesPerSecond > 0 && `, ${_mib(op.rateBytesPerSecond)} MiB/s`}
          {op.secondsLeft !== null && op.doneBytes < op.totalBytes && `, ${op.secondsLeft} s left`}
        </p>
      ))}
      {a.lastError && <p class="error" role="alert">Last error: {a.lastError}</p>}
      <div class="actions" role="group" aria-label={`${a.name}'s operations`}>
        {button("start", a.state === "suspended" ? "Resume" : "Start", !running)}
        {button("stop", "Stop", running)}
        {button("suspend", "Suspend", running)}
        {button("reset", "Reset", !running)}
        <button
          type="button"
          class="danger"
          disabled={busy || running}
          onClick={() => onDelete(a.name)}
        >
          Delete…
        </button>
      </div>
    </article>
  );
}
