/** @jsxImportSource preact */
import type { ApplianceStatus } from "../api.ts";
import { formatBytes, percent } from "../format.ts";
import type { Operation } from "../models/appliances.ts";
import { BackupState } from "./backup_state.tsx";
import { OperationsProgress } from "./operation_progress.tsx";

/** Props of `ApplianceCard`. */
export interface ApplianceCardProps {
  appliance: ApplianceStatus;
  /** The operation under way, if any. */
  pending?: string;
  /** Where the name links to (none on the appliance's own page). */
  href?: string;
  onOperate(name: string, op: Operation): void;
  onDelete(name: string): void;
  /** Keeps the appliance for offline use (`on`), or stops keeping it. */
  onHoard(name: string, on: boolean): void;
}

function _version(a: ApplianceStatus): string {
  const current = a.runningVersion ?? a.suspendedVersion;
  const latest = a.latestVersion === null ? "repository unreachable" : `latest v${a.latestVersion}`;
  return current === null ? latest : `v${current} (${latest})`;
}

/** How much of the newest version is cached, and whether the appliance is safe offline. */
function _Cache({ a }: { a: ApplianceStatus }) {
  const version = a.latestVersion === null ? "the newest version" : `v${a.latestVersion}`;
  const amount = a.totalBytes === null
    ? `How much of ${version} is cached is not known yet.`
    : a.cachedBytes === a.totalBytes
    ? `All ${formatBytes(a.totalBytes)} of ${version} cached.`
    : `${formatBytes(a.cachedBytes ?? 0)} of ${formatBytes(a.totalBytes)} of ${version} ` +
      `cached (${percent(a.cachedBytes ?? 0, a.totalBytes)}%).`;
  const offline = a.safeOffline
    ? "Safe to use offline: kept in the cache."
    : a.hoarding
    ? "Not safe offline yet: fetching the rest."
    : a.hoarded
    ? "Not safe offline yet: kept for offline use, waiting to fetch the rest."
    : "Not safe offline: keep it for offline use to fetch and keep all of it.";
  return (
    <p class="cache" data-testid="cache">
      {amount}{" "}
      <span class={a.safeOffline ? "safe" : a.offline ? "unsafe" : undefined}>{offline}</span>
    </p>
  );
}

/** One appliance: what it is, its state, and its operations. */
export function ApplianceCard(
  { appliance: a, pending, href, onOperate, onDelete, onHoard }: ApplianceCardProps,
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
      {a.offline && <p class="badge offline">offline: repository unreachable</p>}
      {a.safeOffline && <p class="badge safe-offline">safe offline</p>}
      {a.accelNote && <p class="accel-note" data-testid="accel-note">{a.accelNote}</p>}
      <_Cache a={a} />
      <BackupState appliance={a} />
      <OperationsProgress name={a.name} operations={a.operations} />
      {a.lastError && <p class="error" role="alert">Last error: {a.lastError}</p>}
      {a.trust?.problem && (
        <p class="error" role="alert" data-testid="trust-problem">
          Trust problem: {a.trust.problem}
        </p>
      )}
      <div class="actions" role="group" aria-label={`${a.name}'s operations`}>
        {button("start", a.state === "suspended" ? "Resume" : "Start", !running)}
        {button("stop", "Stop", running)}
        {button("suspend", "Suspend", running)}
        {button("reset", "Reset", !running)}
        <button
          type="button"
          aria-pressed={a.hoarded}
          disabled={a.offline && !a.hoarded}
          onClick={() => onHoard(a.name, !a.hoarded)}
        >
          Keep for offline use
        </button>
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
