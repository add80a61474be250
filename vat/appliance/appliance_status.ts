/**
 * What the UI and the CLI see of an appliance (`ApplianceStatus`), and the lookup
 * behind its repository's part: the newest version, how much of it is cached, and
 * what the trust checks found, from the repository when it answers in time, from its
 * mirror offline, and the last answer when even that fails.
 *
 * @module
 */

import type { BackupStatus, SubscriptionBackup } from "../backup/subscription_backup.ts";
import { IntegrityError, isRetryable, TimeoutError, VatError } from "../errors.ts";
import type { OperationProgress, ProgressMeter } from "../progress.ts";
import { redactLocation } from "../repo/open_store.ts";
import type { AccelDecision } from "../vmm/accelerator.ts";
import type { Accelerator } from "../vmm/virtual_machine.ts";
import type { ApplianceRun } from "./appliance_run.ts";
import type { ApplianceRepos } from "./appliance_repos.ts";
import type { RepoTrust, TrustStatus } from "./repo_trust.ts";
import type { ApplianceRecord, StateDb } from "./state_db.ts";
import type { Holding, VersionHoldings } from "./version_holdings.ts";

/** What the UI and CLI show of one appliance. */
export interface ApplianceStatus {
  name: string;
  repo: string;
  state: "stopped" | "starting" | "running" | "stopping" | "suspending" | "suspended";
  /** The version running now (null when not running). */
  runningVersion: number | null;
  /** The newest published version, null when the repository could not be reached. */
  latestVersion: number | null;
  /** A newer version than the running (or suspended) one is published. */
  updateAvailable: boolean;
  /** The newest version says older ones must not start. */
  updateRequired: boolean;
  suspendedVersion: number | null;
  /** Whether the subscription (and its user disk) exists. */
  subscribed: boolean;
  /**
   * While it runs with a screen: an id of that run's screen (QEMU's pid), which
   * `GET /api/appliances/NAME/vnc` relays; a new run has a new id. Null otherwise.
   */
  screenId: number | null;
  /** What the guest runs on (`kvm` or `tcg`), while running. */
  accel: Accelerator | null;
  /** Why it runs on TCG when KVM was to be used ("KVM on this host hangs guests; ..."). */
  accelNote: string | null;
  /** What went wrong last (a failed start, a crash), until the next start. */
  lastError: string | null;
  /** The repository cannot be reached now (its metadata comes from the local mirror). */
  offline: boolean;
  /**
   * Every chunk of the newest version the VAT holds (system disk, boot files, and the
   * subscription's user-disk base) is cached and pinned by a hoard.
   */
  safeOffline: boolean;
  /** Bytes of that version's chunks in the cache, and in all (null when unknown). */
  cachedBytes: number | null;
  totalBytes: number | null;
  /** The user asked to keep this appliance for offline use (`vat hoard`). */
  hoarded: boolean;
  /** A hoard is fetching chunks now. */
  hoarding: boolean;
  /** Long operations running for this appliance now (hoard, publish, prefetch, backup). */
  operations: OperationProgress[];
  /** The user disk's backup (`enabled: false` when the VAT has no data repository). */
  backup: BackupStatus;
  /**
   * What this VAT holds the repository to: pinned keys, the highest version accepted,
   * freshness, and what is wrong now (docs/SECURITY.md); null before the first pin.
   */
  trust: TrustStatus | null;
}

/** The backup status of an appliance with nothing backed up (yet). */
export const NO_BACKUP: BackupStatus = {
  enabled: false,
  series: null,
  pendingBytes: 0,
  pendingSnapshots: 0,
  uploading: false,
  rateBytesPerSecond: 0,
  lastVersion: null,
  lastBackupAt: null,
  error: null,
  forkNote: null,
};

/** What an appliance's status is made of. */
export interface StatusParts {
  record: ApplianceRecord;
  run: ApplianceRun | undefined;
  /** What it is doing now ("starting", "stopping", ...), when busy. */
  busy: ApplianceStatus["state"] | undefined;
  lastError: string | null;
  view: RepoView;
  /** The subscription's backup, when there is one. */
  backup: SubscriptionBackup | null;
  /** Whether the VAT backs user disks up at all. */
  backupsEnabled: boolean;
  /** A running hoard's progress. */
  hoard: ProgressMeter | undefined;
  hoarding: boolean;
  operations: OperationProgress[];
  /** The VAT's accelerator decision (why a guest runs on TCG). */
  accel: AccelDecision | undefined;
  trust: TrustStatus | null;
}

/** The status the UI and the CLI show, from its parts. */
export function composeStatus(p: StatusParts): ApplianceStatus {
  const { record, run, view } = p;
  const latest = view.latest;
  const holding = view.holding;
  const current = run?.version.number ?? record.suspendedVersion ?? record.lastVersion;
  return {
    name: record.name,
    // Credentials in its URL are not shown (status, listings, the UI).
    repo: redactLocation(record.repo),
    state: p.busy ?? (run ? "running" : record.suspendedVersion !== null ? "suspended" : "stopped"),
    runningVersion: run?.version.number ?? null,
    latestVersion: latest?.version ?? null,
    updateAvailable: latest !== null && current !== null && latest.version > current,
    updateRequired: latest?.updateRequired ?? false,
    suspendedVersion: record.suspendedVersion,
    subscribed: record.userBaseVersion !== null,
    screenId: run?.vm.vncSocket ? run.vm.pid : null,
    accel: run?.vm.accel ?? null,
    accelNote: run?.vm.accel === "tcg" && p.accel?.fellBack ? p.accel.reason : null,
    lastError: p.lastError,
    offline: view.offline,
    safeOffline: holding !== null && record.hoarded &&
      record.hoardedVersion === holding.version && holding.cachedBytes === holding.totalBytes,
    cachedBytes: p.hoard?.doneBytes ?? holding?.cachedBytes ?? null,
    totalBytes: p.hoard?.totalBytes ?? holding?.totalBytes ?? null,
    hoarded: record.hoarded,
    hoarding: p.hoarding,
    operations: [...p.operations, ...(p.backup?.meter ? [p.backup.meter.progress()] : [])],
    // Without a subscription yet, `enabled` still says whether it will be backed up.
    backup: p.backup?.status(run?.user?.overlay?.dirtyBytes() ?? 0) ??
      { ...NO_BACKUP, enabled: p.backupsEnabled },
    trust: p.trust,
  };
}

/** What a status lookup found out about the repository. */
export interface RepoView {
  latest: { version: number; updateRequired: boolean } | null;
  offline: boolean;
  holding: Holding | null;
  /** What the trust checks found wrong (a refused version or key list, rollback, freeze). */
  problem: string | null;
}

/** How long a status waits for the repository before it answers from what it knew. */
const _LOOKUP_TIMEOUT_MS = 10_000;

/** What the lookups work with. */
export interface RepoViewsContext {
  db: StateDb;
  repos: ApplianceRepos;
  trust: RepoTrust;
  holdings: VersionHoldings;
  /** Called when a newer version than the one last seen appears. */
  onNewVersion?: () => void;
}

/** The repository's part of each appliance's status, with the last answers kept. */
export class RepoViews {
  readonly #ctx: RepoViewsContext;
  readonly #last = new Map<string, RepoView>();

  constructor(ctx: RepoViewsContext) {
    this.#ctx = ctx;
  }

  /** Forgets what was known of `name` (deleted). */
  forget(name: string): void {
    this.#last.delete(name);
  }

  /**
   * The newest version and how much of it is cached, looked up with a short time
   * limit: from the repository, from its local mirror when it cannot be reached, and
   * the last known answer when even that fails.
   */
  async of(record: ApplianceRecord): Promise<RepoView> {
    const { repos, trust, holdings, db } = this.#ctx;
    try {
      const view = await _withTimeout(
        repos.withTrusted(record, async (repo, store, keysProblem): Promise<RepoView> => {
          const n = await repo.latestVersion();
          const version = n === null ? null : await repo.readVersion(n);
          if (version) trust.accept(record.name, version);
          // Only a repository that answers can vouch for its freshness (offline is fine).
          const freshness = store.offline ? null : await trust.freshness(record.name, repo, n);
          const problem = keysProblem ?? (store.offline ? null : freshness);
          if (!version) return { latest: null, offline: store.offline, holding: null, problem };
          const holding = await holdings.holdingOf(record, repo, version).catch(() => null);
          return {
            latest: {
              version: version.number,
              updateRequired: version.manifest.updateRequired ?? false,
            },
            offline: store.offline,
            holding,
            problem,
          };
        }),
        _LOOKUP_TIMEOUT_MS,
      );
      const before = this.#last.get(record.name)?.latest?.version;
      this.#last.set(record.name, view);
      if (before !== undefined && view.latest && view.latest.version !== before) {
        this.#ctx.onNewVersion?.();
      }
      return view;
    } catch (err) {
      const last = this.#last.get(record.name);
      // A timeout is retryable: the repository is as good as unreachable.
      const offline = isRetryable(err) || !(err instanceof VatError);
      // A refused version (untrusted key, rollback, another repository) changes nothing:
      // the status keeps what was accepted before, and says why.
      const trusted = db.trust(record.name);
      const accepted = trusted?.highestVersion != null
        ? {
          version: trusted.highestVersion,
          updateRequired: trusted.requiredVersion === trusted.highestVersion,
        }
        : null;
      return {
        latest: last?.latest ?? accepted,
        offline,
        holding: last?.holding ?? null,
        problem: err instanceof IntegrityError ? err.message : null,
      };
    }
  }
}

function _withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`no answer within ${ms} ms`)), ms);
    }),
  ]);
}
