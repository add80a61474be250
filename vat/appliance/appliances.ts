/**
 * The appliances on this VAT and what a user does with them (the paper's operations):
 * start (the newest version; resuming a memory image of that same version), stop
 * (ACPI powerdown, then a hard quit), suspend (memory image on local storage), reset
 * (the ephemeral disk and memory image go, the user disk stays), delete (the
 * subscription and its user disk), and publish (an administrator's running system
 * disk becomes the next version). Changes are announced as "change" events.
 *
 * Offline (docs/DAEMON.md, "Hoarding and offline use"): repositories are read through
 * a `MirroredStore`, so their metadata is at hand without a network; `hoard` fetches
 * and pins every chunk of the newest version, and a start without the repository
 * boots that version when every chunk of it is cached.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { ChunkCache } from "../cache/chunk_cache.ts";
import {
  ConflictError,
  IntegrityError,
  isRetryable,
  NotFoundError,
  PermanentError,
  TransientError,
  UsageError,
  VatError,
} from "../errors.ts";
import { loadSigningKey } from "../auth/signing_key.ts";
import { openStore } from "../repo/open_store.ts";
import { type DiskSource, publishDisks, type PublishResult } from "../repo/publish.ts";
import { Repository, type Version } from "../repo/repository.ts";
import { MirroredStore } from "../repo/store_mirrored.ts";
import { toHex } from "../repo/chunk_codec.ts";
import { formatBytes, type OperationProgress, ProgressMeter } from "../progress.ts";
import { openVersionDisk } from "../disk/version_disk.ts";
import { removeIfThere, writeFileAtomic } from "../fs_atomic.ts";
import { runDirPaths } from "../vmm/run_dir.ts";
import { readBootTrace } from "../repo/boot_trace.ts";
import { type ApplianceHeatMap, HeatMaps } from "./heat_map.ts";
import type { AcceleratorChoice } from "../vmm/accelerator.ts";
import type { Accelerator } from "../vmm/virtual_machine.ts";
import {
  type ApplianceRun,
  type RunSpec,
  startApplianceRun,
  type UserDiskSpec,
} from "./appliance_run.ts";
import { type Backups, DEFAULT_SNAPSHOT_INTERVAL_MS } from "../backup/backups.ts";
import type {
  BackupStatus,
  SnapshotEntry,
  SubscriptionBackup,
} from "../backup/subscription_backup.ts";
import { CowOverlay } from "../disk/cow_overlay.ts";
import type { FetchScheduler } from "../prefetch/fetch_scheduler.ts";
import type { PrefetchTarget } from "../prefetch/prefetcher.ts";
import { startTraceReplay } from "../prefetch/trace_replay.ts";
import { type ApplianceRecord, checkApplianceName, type StateDb } from "./state_db.ts";
import { RepoTrust, type TrustStatus } from "./repo_trust.ts";

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

/** How `start` treats a subscription another VAT holds. */
export interface StartOptions {
  /** Take it over: the other VAT keeps its unsent changes as a fork. */
  takeOver?: boolean;
  /** Continue here in a new subscription (a fork). */
  fork?: boolean;
}

/** The backup status of an appliance with nothing backed up (yet). */
const NO_BACKUP: BackupStatus = {
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

/** The distinct chunks one version needs on this VAT. */
interface _VersionChunks {
  hashes: Uint8Array[];
  lengths: number[];
  totalBytes: number;
}

/** What a status lookup found out about the repository. */
interface _View {
  latest: { version: number; updateRequired: boolean } | null;
  offline: boolean;
  holding: { cachedBytes: number; totalBytes: number; version: number } | null;
  /** What the trust checks found wrong (a refused version or key list, rollback, freeze). */
  problem: string | null;
}

/** What `Appliances` does beyond its state (docs/CACHE.md, "Prefetching"). */
export interface AppliancesOptions {
  /** Orders repository traffic: the guests' reads as demand, trace replay below them. */
  scheduler?: FetchScheduler;
  /**
   * Called when there may be something new to prefetch: an appliance added or started,
   * a newer version seen.
   */
  onPrefetchNeeded?: () => void;
  /** Backs user disks up (the daemon's `--data-repo`); none when absent. */
  backups?: Backups | null;
  /** Decides KVM or TCG for the guests (default: the process's shared choice). */
  accelerator?: AcceleratorChoice;
}

/** How long a counted number of cached bytes is trusted while nothing changed. */
const HOLDING_TTL_MS = 5000;
/** A hoard that failed in the background is not tried again sooner than this. */
const HOARD_RETRY_MS = 60_000;

/** The appliances of one VAT. */
export class Appliances extends EventTarget {
  readonly #db: StateDb;
  readonly #cache: ChunkCache;
  readonly #stateDir: string;
  readonly #runs = new Map<string, ApplianceRun>();
  readonly #busy = new Map<string, ApplianceStatus["state"]>();
  readonly #errors = new Map<string, string>();
  /** The last status lookup of each appliance, shown while a lookup fails. */
  readonly #views = new Map<string, _View>();
  /** Chunk lists of versions, by `#chunksKey` (a version never changes). */
  readonly #chunkSets = new Map<string, _VersionChunks>();
  /** Cached byte counts, by `#chunksKey`, valid for `#generation` and a short time. */
  readonly #holdings = new Map<string, { cachedBytes: number; at: number; generation: number }>();
  /** Bumped whenever the cache's content changes in bulk (hoard, unhoard, a run). */
  #generation = 0;
  readonly #hoarding = new Map<string, Promise<void>>();
  readonly #hoardProgress = new Map<string, ProgressMeter>();
  /** Long operations of each appliance, by appliance name (see `ApplianceStatus.operations`). */
  readonly #operations = new Map<string, Set<ProgressMeter>>();
  readonly #hoardFailedAt = new Map<string, number>();
  readonly #options: AppliancesOptions;
  readonly #backups: Backups | null;
  readonly #snapshotTimers = new Map<string, ReturnType<typeof setInterval>>();
  readonly #heatMaps = new WeakMap<ApplianceRun, HeatMaps>();
  readonly #trust: RepoTrust;

  constructor(db: StateDb, cache: ChunkCache, stateDir: string, options: AppliancesOptions = {}) {
    super();
    this.#db = db;
    this.#trust = new RepoTrust(db);
    this.#cache = cache;
    this.#stateDir = stateDir;
    this.#options = options;
    this.#backups = options.backups ?? null;
    this.#backups?.addEventListener("change", () => this.#changed());
  }

  /** Whether user disks are backed up (the VAT has a data repository). */
  get backupEnabled(): boolean {
    return this.#backups !== null;
  }

  /**
   * Queues what a killed daemon left unsnapshotted on stopped appliances' user disks,
   * and starts uploading every outbox (called once at daemon start).
   */
  async resumeBackups(): Promise<void> {
    if (!this.#backups) return;
    for (const record of this.#db.list()) {
      if (record.userBaseVersion === null || this.#runs.has(record.name)) continue;
      try {
        await this.#backupOf(record.name); // opened, so the uploader sees its outbox
        await this.#snapshotStopped(record);
      } catch (err) {
        console.error(`backup ${record.name}: ${(err as Error).message}`);
      }
    }
    this.#backups.kick();
  }

  /**
   * Adds an appliance from `repo` (its name defaults to the repository's last path
   * part), pinning the repository's id and publisher keys: `publishers` (an
   * administrator's), or the repository's own on first use (docs/SECURITY.md).
   */
  async add(repo: string, name?: string, publishers?: string[]): Promise<ApplianceStatus> {
    const chosen = checkApplianceName(name ?? _defaultName(repo));
    if (this.#db.list().some((r) => r.name === chosen)) {
      throw new ConflictError(`an appliance called "${chosen}" already exists`);
    }
    // The repository must exist and hold a version that verifies with the pins now, so
    // a typo or a wrong key fails here.
    const trust = await this.#withRepo(repo, async (r, store) => {
      const pinned = await this.#trust.pin(r, publishers?.length ? publishers : null);
      if (store.offline) {
        throw new TransientError(`${repo} cannot be reached; add the appliance while connected`);
      }
      return pinned;
    });
    this.#db.add(chosen, repo, trust);
    this.#changed();
    this.#options.onPrefetchNeeded?.();
    return await this.status(chosen);
  }

  /**
   * The access heat map of the appliance's disks while it runs (no disks otherwise):
   * what it read, wrote and fetched, region by region, beside what is cached and
   * where its boot trace reads.
   */
  async heatMap(name: string): Promise<ApplianceHeatMap> {
    const record = this.#db.get(name);
    const run = this.#runs.get(record.name);
    if (!run) return { name: record.name, version: null, disks: [] };
    let maps = this.#heatMaps.get(run);
    if (!maps) {
      const trace = await this.#withRepo(record.repo, (repo) => readBootTrace(repo, run.version))
        .catch(() => null);
      maps = new HeatMaps(run.access, trace);
      this.#heatMaps.set(run, maps);
    }
    return { name: record.name, version: run.version.number, disks: maps.disks() };
  }

  /** Every appliance's status. */
  async list(): Promise<ApplianceStatus[]> {
    return await Promise.all(this.#db.list().map((r) => this.#statusOf(r)));
  }

  /** One appliance's status. */
  async status(name: string): Promise<ApplianceStatus> {
    return await this.#statusOf(this.#db.get(name));
  }

  /** Starts the appliance at its newest version (resuming a memory image of that version). */
  async start(name: string, options: StartOptions = {}): Promise<ApplianceStatus> {
    const record = this.#db.get(name);
    if (this.#runs.has(name) || this.#busy.has(name)) {
      throw new ConflictError(`appliance "${name}" is already running on this VAT`);
    }
    this.#busy.set(name, "starting");
    this.#errors.delete(name);
    this.#changed();
    let store: MirroredStore | null = null;
    try {
      store = this.#openStore(record.repo);
      const repo = await this.#openTrusted(record, store);
      // Offline, "latest" is the newest version whose metadata the mirror holds.
      const version = await repo.resolveVersion("latest");
      this.#trust.checkRequired(name, version);
      this.#trust.accept(name, version);
      if (store.offline) await this.#checkSafeOffline(record, repo, version);
      else if (record.hoarded && record.hoardedVersion !== version.number) {
        // A newer version than the hoarded one: fetch and pin it while this one runs.
        this.#hoardInBackground(name);
      }
      // The first start creates the subscription: its user disk starts as this
      // version's initial user disk and keeps that base from then on.
      if (record.userBaseVersion === null) {
        this.#db.update(name, { userBaseVersion: version.number });
        record.userBaseVersion = version.number;
      }
      const userBase = await _readVersionOrNull(repo, record.userBaseVersion);
      const dirs = this.#dirs(name);
      let userDisk: UserDiskSpec | null = userBase
        ? { repo, version: userBase, cache: this.#cache }
        : null;
      let backup: SubscriptionBackup | null = null;
      if (this.#backups && userBase?.manifest.disks.user) {
        backup = await this.#backups.subscription(name, `${dirs.dir}/backup`);
        const overlayPath = `${dirs.dir}/user.overlay`;
        const local = await CowOverlay.inspect(overlayPath);
        const plan = await backup.prepareStart(
          { hasDisk: local.exists, dirty: local.dirty, overlayPath },
          options,
        );
        if (plan.base) {
          const dataRepo = backup.repoOf(plan.base.series);
          userDisk = {
            repo: dataRepo,
            version: await dataRepo.readVersion(plan.base.version),
            cache: this.#backups.cache,
          };
        }
        userDisk = { ...userDisk!, discardOverlay: plan.discardOverlay };
        userDisk.markAllDirty = plan.markAllDirty;
        backup.active = true;
        // A memory image knows the user disk it was suspended with: not a restored one.
        if (plan.discardOverlay && record.suspendedVersion !== null) {
          await this.#dropMemoryImage(name);
          record.suspendedVersion = null;
        }
      }
      let resumeFrom: { path: string; machineType: string } | undefined;
      if (record.suspendedVersion === version.number) {
        const saved = JSON.parse(await Deno.readTextFile(`${dirs.dir}/memory.json`));
        resumeFrom = { path: `${dirs.dir}/memory.img`, machineType: saved.machineType };
      } else if (record.suspendedVersion !== null) {
        // A memory image of an older version cannot run on the newer system disk.
        await this.#dropMemoryImage(name);
      }
      const subscription = backup;
      let run: ApplianceRun;
      try {
        run = await this.#startRun(name, {
          repo,
          version,
          accelerator: this.#options.accelerator,
          userDisk,
          cache: this.#cache,
          dirs,
          resumeFrom,
          // The first snapshot's instant is before the guest runs; its copying goes on
          // while the guest boots (copy-before-write keeps it exact).
          beforeBoot: subscription
            ? ({ user }) =>
              new Promise<void>((frozen) => {
                if (!user?.overlay) return frozen();
                this.#snapshotOverlay(name, subscription, user.overlay, version, "start", frozen)
                  .catch(() => {});
              })
            : undefined,
          beforeClose: subscription
            ? (ended) => this.#snapshotRun(name, subscription, ended, "stop")
            : undefined,
        });
      } catch (err) {
        if (subscription) subscription.active = false;
        throw err;
      }
      if (resumeFrom) await this.#dropMemoryImage(name);
      this.#runs.set(name, run);
      if (subscription) this.#startSnapshots(name, subscription, run);
      this.#db.update(name, { lastVersion: version.number });
      // The run reads chunks through this store until QEMU exits.
      const runStore = store;
      store = null;
      run.ended.then((exit) => {
        runStore.close().catch(() => {});
        clearInterval(this.#snapshotTimers.get(name));
        this.#snapshotTimers.delete(name);
        if (subscription) {
          subscription.active = false;
          this.#backups?.kick();
        }
        this.#runs.delete(name);
        this.#generation++;
        if (exit.reason === "crashed" || exit.reason === "panic") {
          this.#errors.set(
            name,
            `the appliance stopped unexpectedly (${exit.reason}): ${exit.error?.message ?? ""}`
              .trim(),
          );
        }
        this.#changed();
      });
      this.#options.onPrefetchNeeded?.();
    } catch (err) {
      this.#errors.set(name, (err as Error).message);
      await store?.close().catch(() => {});
      throw err;
    } finally {
      this.#busy.delete(name);
      this.#changed();
    }
    return await this.status(name);
  }

  /** Shuts the appliance down: ACPI powerdown, then a hard quit after `timeoutMs`. */
  async stop(name: string, timeoutMs = 30_000): Promise<ApplianceStatus> {
    const run = this.#running(name);
    this.#busy.set(name, "stopping");
    this.#changed();
    try {
      await run.vm.powerdown(timeoutMs);
      await run.ended;
    } finally {
      this.#busy.delete(name);
      this.#changed();
    }
    return await this.status(name);
  }

  /** Saves the running appliance's memory to local storage and stops it. */
  async suspend(name: string): Promise<ApplianceStatus> {
    const run = this.#running(name);
    this.#busy.set(name, "suspending");
    this.#changed();
    try {
      const dir = this.#dirs(name).dir;
      const image = await run.vm.suspendTo(`${dir}/memory.img`);
      await run.ended;
      await writeFileAtomic(
        `${dir}/memory.json`,
        new TextEncoder().encode(JSON.stringify({ ...image, version: run.version.number })),
      );
      this.#db.update(name, { suspendedVersion: run.version.number });
    } finally {
      this.#busy.delete(name);
      this.#changed();
    }
    return await this.status(name);
  }

  /** Throws away the ephemeral disk and the memory image; the user disk stays. */
  async reset(name: string): Promise<ApplianceStatus> {
    this.#db.get(name);
    this.#notRunning(name, "reset");
    await this.#dropMemoryImage(name);
    await removeIfThere(`${this.#dirs(name).dir}/ephemeral.raw`);
    this.#changed();
    return await this.status(name);
  }

  /**
   * Deletes the appliance, its subscription and its user disk. Refused while changes of
   * the user disk wait to be backed up, unless `discardUnsent`: those would be lost
   * (the versions already in the data repository stay).
   */
  async delete(name: string, options: { discardUnsent?: boolean } = {}): Promise<void> {
    this.#db.get(name);
    this.#notRunning(name, "delete");
    const { backup } = await this.status(name);
    if (!options.discardUnsent && (backup.pendingBytes > 0 || backup.pendingSnapshots > 0)) {
      throw new ConflictError(
        `"${name}" has ${formatBytes(backup.pendingBytes)} of changes not yet backed up ` +
          `(vat backup now ${name} --wait sends them); deleting it now loses them: ` +
          `vat delete ${name} --yes --discard-unsent`,
      );
    }
    await this.#backups?.forget(name);
    await removeIfThere(this.#dirs(name).dir, { recursive: true });
    for (const owner of this.#cache.pinOwners(`hoard:${name}:`)) this.#cache.unpin(owner);
    this.#db.remove(name);
    this.#views.delete(name);
    this.#errors.delete(name);
    this.#changed();
  }

  /**
   * Keeps the appliance for offline use (`on`): fetches every missing chunk of its
   * newest version through the cache and pins them (owner `hoard:NAME:VERSION`);
   * later versions are fetched and pinned when they are seen, and only then are the
   * older version's pins dropped. `on = false` drops every pin of the appliance.
   */
  async hoard(name: string, on: boolean): Promise<ApplianceStatus> {
    this.#db.get(name);
    if (on) {
      this.#db.update(name, { hoarded: true });
      this.#hoardFailedAt.delete(name);
      this.#changed();
      await this.#hoardNow(name);
    } else {
      this.#db.update(name, { hoarded: false, hoardedVersion: null });
      for (const owner of this.#cache.pinOwners(`hoard:${name}:`)) this.#cache.unpin(owner);
      this.#generation++;
      this.#changed();
    }
    return await this.status(name);
  }

  /** The serial console's log. */
  async consoleLog(name: string): Promise<string> {
    this.#db.get(name);
    try {
      return await Deno.readTextFile(runDirPaths(this.#dirs(name).runDir).consoleLog);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return "";
      throw err;
    }
  }

  /** Where the serial console's log is (it may not exist yet). */
  consoleLogPath(name: string): string {
    this.#db.get(name);
    return runDirPaths(this.#dirs(name).runDir).consoleLog;
  }

  /**
   * The running appliance's screen: QEMU's VNC Unix socket (plain RFB, no password:
   * hand it only to an authenticated caller) and when it goes away. Throws
   * `NotFoundError` for an unknown appliance, `ConflictError` when it is not running.
   */
  screen(name: string): { name: string; socketPath: string; ended: Promise<unknown> } {
    this.#db.get(name);
    const run = this.#runs.get(name);
    if (!run?.vm.vncSocket) {
      throw new ConflictError(`"${name}" has no screen now: it is not running`);
    }
    return { name, socketPath: run.vm.vncSocket, ended: run.vm.exited };
  }

  /** Types `line` and a newline into the running appliance's serial console. */
  async consoleSend(name: string, line: string): Promise<void> {
    await this.#running(name).vm.console.writeLine(line);
  }

  /**
   * Publishes the running appliance's system disk (its base plus the overlay, as the
   * guest has it now) as the next version of its repository, keeping the other disks
   * and the VM description of the running version.
   */
  async publishFrom(name: string, keyPath: string): Promise<PublishResult> {
    const run = this.#running(name);
    const record = this.#db.get(name);
    const key = await loadSigningKey(keyPath);
    const store = await openStore(record.repo, { signingKey: key });
    try {
      const repo = await Repository.open(store);
      const sources: [string, DiskSource][] = [["system", run.system.device]];
      for (const disk of Object.keys(run.version.manifest.disks)) {
        if (disk === "system") continue;
        const base = await openVersionDisk(repo, run.version, disk, this.#cache);
        sources.push([disk, base.device]);
      }
      await run.system.device.flush();
      // Shown in the status's `operations` while it runs; events at most twice a second.
      const meter = new ProgressMeter("publish", sources.reduce((n, [, s]) => n + s.sizeBytes, 0));
      let lastEvent = Date.now();
      const onProgress = (p: { doneBytes: number }) => {
        meter.moveTo(p.doneBytes);
        if (Date.now() - lastEvent > 500) {
          lastEvent = Date.now();
          this.#changed();
        }
      };
      this.#track(name, meter);
      try {
        return await publishDisks(repo, sources, run.version.manifest.vm, { key, onProgress });
      } finally {
        this.#untrack(name, meter);
      }
    } finally {
      await store.close();
    }
  }

  /** The user disk's versions in the data repository and the snapshots waiting for upload. */
  async snapshots(name: string): Promise<SnapshotEntry[]> {
    return await (await this.#backupOf(name)).list();
  }

  /**
   * Takes a snapshot of the running appliance's user disk now (of a stopped one: of
   * whatever a killed daemon left unsnapshotted) and uploads what waits.
   */
  async backupNow(name: string): Promise<ApplianceStatus> {
    const backup = await this.#backupOf(name);
    const run = this.#runs.get(name);
    if (run) await this.#snapshotRun(name, backup, run, "now");
    else await this.#snapshotStopped(this.#db.get(name));
    this.#backups!.kick();
    return await this.status(name);
  }

  /**
   * Makes the stopped appliance's user disk equal to backed-up version `version` by
   * queueing it as the newest version (nothing is deleted: what the disk held is
   * snapshotted first, and every version stays listed).
   */
  async undo(name: string, version: number): Promise<ApplianceStatus> {
    const record = this.#db.get(name);
    this.#notRunning(name, "undo");
    const backup = await this.#backupOf(name);
    await this.#snapshotStopped(record);
    await backup.queueUndo(version);
    await CowOverlay.remove(`${this.#dirs(name).dir}/user.overlay`);
    await this.#dropMemoryImage(name);
    this.#backups!.kick();
    this.#changed();
    return await this.status(name);
  }

  /** Stops every running appliance (ACPI powerdown, bounded). */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#runs.keys()].map((name) => this.stop(name, 15_000)));
  }

  /**
   * Every added appliance, for the background prefetcher, whether it ever ran or not
   * (as the paper's prefetcher, so that a first start finds its blocks cached): each
   * opens its newest version (null while its repository cannot be reached) and shows
   * a prefetch in the appliance's `operations`. The user disk prefetched is the one a
   * start would read (`#prefetchedUserBase`).
   */
  prefetchTargets(): PrefetchTarget[] {
    return this.#db.list().map((record) => ({
      name: record.name,
      open: async () => {
        const store = this.#openStore(record.repo);
        try {
          const repo = await this.#openTrusted(record, store);
          const version = await repo.resolveVersion("latest");
          if (store.offline) {
            await store.close();
            return null;
          }
          this.#trust.accept(record.name, version);
          const userBase = await this.#prefetchedUserBase(record, repo, version);
          return { repo, version, userBase, close: () => store.close() };
        } catch (err) {
          await store.close();
          throw err;
        }
      },
      track: (meter) => this.#track(record.name, meter),
      untrack: (meter) => {
        this.#generation++;
        this.#untrack(record.name, meter);
      },
    }));
  }

  /**
   * The version whose initial user disk a start of `version` reads, for the
   * prefetcher; null when the user disk comes from the data repository instead
   * (restored there, or maybe so at a first start: a fresh VAT restores the newest
   * backup), which is not worth prefetching from the appliance's repository.
   */
  async #prefetchedUserBase(
    record: ApplianceRecord,
    repo: Repository,
    version: Version,
  ): Promise<Version | null> {
    if (record.userBaseVersion === null) return this.#backups ? null : version;
    if (this.#backups) {
      const backup = await this.#backups.subscription(
        record.name,
        `${this.#dirs(record.name).dir}/backup`,
      );
      if (backup.outbox.state().base) return null;
    }
    return await _readVersionOrNull(repo, record.userBaseVersion);
  }

  /** Names of running appliances. */
  runningNames(): string[] {
    return [...this.#runs.keys()];
  }

  async #statusOf(record: ApplianceRecord): Promise<ApplianceStatus> {
    const run = this.#runs.get(record.name);
    const backup = this.#backups && record.userBaseVersion !== null
      ? await this.#backups.subscription(record.name, `${this.#dirs(record.name).dir}/backup`)
        .catch(() => null)
      : null;
    const view = await this.#viewOf(record);
    const latest = view.latest;
    if (
      record.hoarded && !view.offline && latest && record.hoardedVersion !== latest.version &&
      Date.now() - (this.#hoardFailedAt.get(record.name) ?? 0) > HOARD_RETRY_MS
    ) {
      // A newer version is published: fetch and pin it before calling it safe.
      this.#hoardInBackground(record.name);
    }
    const progress = this.#hoardProgress.get(record.name);
    const holding = view.holding;
    const current = run?.version.number ?? record.suspendedVersion ?? record.lastVersion;
    const busy = this.#busy.get(record.name);
    return {
      name: record.name,
      repo: record.repo,
      state: busy ?? (run ? "running" : record.suspendedVersion !== null ? "suspended" : "stopped"),
      runningVersion: run?.version.number ?? null,
      latestVersion: latest?.version ?? null,
      updateAvailable: latest !== null && current !== null && latest.version > current,
      updateRequired: latest?.updateRequired ?? false,
      suspendedVersion: record.suspendedVersion,
      subscribed: record.userBaseVersion !== null,
      screenId: run?.vm.vncSocket ? run.vm.pid : null,
      accel: run?.vm.accel ?? null,
      accelNote: run?.vm.accel === "tcg" && this.#options.accelerator?.current?.fellBack
        ? this.#options.accelerator.current.reason
        : null,
      lastError: this.#errors.get(record.name) ?? null,
      offline: view.offline,
      safeOffline: holding !== null && record.hoarded &&
        record.hoardedVersion === holding.version && holding.cachedBytes === holding.totalBytes,
      cachedBytes: progress?.doneBytes ?? holding?.cachedBytes ?? null,
      totalBytes: progress?.totalBytes ?? holding?.totalBytes ?? null,
      hoarded: record.hoarded,
      hoarding: this.#hoarding.has(record.name),
      operations: [
        ...[...this.#operations.get(record.name) ?? []].map((m) => m.progress()),
        ...(backup?.meter ? [backup.meter.progress()] : []),
      ],
      // Without a subscription yet, `enabled` still says whether it will be backed up.
      backup: backup?.status(run?.user?.overlay?.dirtyBytes() ?? 0) ??
        { ...NO_BACKUP, enabled: this.#backups !== null },
      trust: this.#trust.status(record.name, view.problem),
    };
  }

  /**
   * The newest version and how much of it is cached, looked up with a short time
   * limit: from the repository, from its local mirror when it cannot be reached, and
   * the last known answer when even that fails.
   */
  async #viewOf(record: ApplianceRecord): Promise<_View> {
    try {
      const view = await _withTimeout(
        this.#withTrustedRepo(record, async (repo, store, keysProblem): Promise<_View> => {
          const n = await repo.latestVersion();
          const version = n === null ? null : await repo.readVersion(n);
          if (version) this.#trust.accept(record.name, version);
          // Only a repository that answers can vouch for its freshness (offline is fine).
          const freshness = store.offline
            ? null
            : await this.#trust.freshness(record.name, repo, n);
          const problem = keysProblem ?? (store.offline ? null : freshness);
          if (!version) return { latest: null, offline: store.offline, holding: null, problem };
          const holding = await this.#holdingOf(record, repo, version).catch(() => null);
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
        10_000,
      );
      const before = this.#views.get(record.name)?.latest?.version;
      this.#views.set(record.name, view);
      if (before !== undefined && view.latest && view.latest.version !== before) {
        this.#options.onPrefetchNeeded?.();
      }
      return view;
    } catch (err) {
      const last = this.#views.get(record.name);
      const offline = isRetryable(err) || !(err instanceof VatError) ||
        /no answer within/.test((err as Error).message);
      // A refused version (untrusted key, rollback, another repository) changes nothing:
      // the status keeps what was accepted before, and says why.
      const trusted = this.#db.trust(record.name);
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

  /** Refuses an offline start of `version` unless every chunk it needs is cached. */
  async #checkSafeOffline(record: ApplianceRecord, repo: Repository, version: Version) {
    const advice = `(hoard it while connected: vat hoard ${record.name})`;
    let holding;
    try {
      holding = await this.#holdingOf(record, repo, version, true);
    } catch (err) {
      throw new PermanentError(
        `"${record.name}" is not safe to use offline: its repository ${record.repo} cannot ` +
          `be reached and version ${version.number} was never fetched here ${advice}`,
        { cause: err },
      );
    }
    const missing = holding.totalBytes - holding.cachedBytes;
    if (missing > 0) {
      throw new PermanentError(
        `"${record.name}" is not safe to use offline: ${formatBytes(missing)} of version ` +
          `${version.number} is not cached ${advice}`,
      );
    }
  }

  /** How many bytes of `version`'s chunks are cached (counted again after a while). */
  async #holdingOf(
    record: ApplianceRecord,
    repo: Repository,
    version: Version,
    fresh = false,
  ): Promise<{ cachedBytes: number; totalBytes: number; version: number }> {
    const key = this.#chunksKey(record, version);
    const chunks = await this.#chunksOf(record, repo, version);
    const known = this.#holdings.get(key);
    if (
      !fresh && known && known.generation === this.#generation &&
      Date.now() - known.at < HOLDING_TTL_MS
    ) {
      return {
        cachedBytes: known.cachedBytes,
        totalBytes: chunks.totalBytes,
        version: version.number,
      };
    }
    let cachedBytes = 0;
    for (let i = 0; i < chunks.hashes.length; i++) {
      if (this.#cache.has(chunks.hashes[i])) cachedBytes += chunks.lengths[i];
    }
    this.#holdings.set(key, { cachedBytes, at: Date.now(), generation: this.#generation });
    return { cachedBytes, totalBytes: chunks.totalBytes, version: version.number };
  }

  #chunksKey(record: ApplianceRecord, version: Version): string {
    return `${record.repo}\n${version.number}\n${record.userBaseVersion ?? version.number}`;
  }

  /**
   * The distinct chunks a start of `version` reads: every disk of it but the user
   * disk (system disk, kernel, initrd), and the user disk of the subscription's base
   * (this version's, before the first start creates the subscription).
   */
  async #chunksOf(
    record: ApplianceRecord,
    repo: Repository,
    version: Version,
  ): Promise<_VersionChunks> {
    const key = this.#chunksKey(record, version);
    const known = this.#chunkSets.get(key);
    if (known) return known;
    const refs = Object.entries(version.manifest.disks)
      .filter(([disk]) => disk !== "user").map(([, entry]) => entry.index);
    const baseNumber = record.userBaseVersion ?? version.number;
    const base = baseNumber === version.number ? version : await repo.readVersion(baseNumber);
    if (base.manifest.disks.user) refs.push(base.manifest.disks.user.index);
    const seen = new Set<string>();
    const out: _VersionChunks = { hashes: [], lengths: [], totalBytes: 0 };
    for (const ref of refs) {
      const index = await repo.readDiskIndex(ref);
      for (let i = 0; i < index.count; i++) {
        const hash = index.hash(i);
        if (!hash) continue; // an all-zero chunk is not stored
        const id = toHex(hash);
        if (seen.has(id)) continue;
        seen.add(id);
        out.hashes.push(hash.slice());
        out.lengths.push(index.chunkLength(i));
        out.totalBytes += index.chunkLength(i);
      }
    }
    // Versions are immutable; the map only needs a bound.
    if (this.#chunkSets.size >= 16) this.#chunkSets.clear();
    this.#chunkSets.set(key, out);
    return out;
  }

  /** Runs (or joins) the hoard of `name`'s newest version. */
  #hoardNow(name: string): Promise<void> {
    let running = this.#hoarding.get(name);
    if (!running) {
      running = this.#hoardVersion(name).finally(() => {
        this.#hoarding.delete(name);
        const meter = this.#hoardProgress.get(name);
        if (meter) this.#untrack(name, meter);
        this.#hoardProgress.delete(name);
        this.#generation++;
        this.#changed();
      });
      this.#hoarding.set(name, running);
    }
    return running;
  }

  #hoardInBackground(name: string): void {
    if (this.#hoarding.has(name)) return;
    this.#hoardNow(name).catch((err) => {
      this.#hoardFailedAt.set(name, Date.now());
      this.#errors.set(name, `hoarding failed: ${(err as Error).message}`);
      console.error(`hoard ${name}: ${(err as Error).message}`);
    });
  }

  async #hoardVersion(name: string): Promise<void> {
    const record = this.#db.get(name);
    await this.#withTrustedRepo(record, async (repo, store) => {
      const version = await repo.resolveVersion("latest");
      if (store.offline) {
        throw new TransientError(
          `cannot hoard "${name}": its repository ${record.repo} cannot be reached`,
        );
      }
      this.#trust.accept(name, version);
      const chunks = await this.#chunksOf(record, repo, version);
      const owner = `hoard:${name}:${version.number}`;
      // Pinned first, so nothing fetched below is evicted before the end.
      this.#cache.pin(owner, chunks.hashes);
      const missing: number[] = [];
      let doneBytes = 0;
      for (let i = 0; i < chunks.hashes.length; i++) {
        if (this.#cache.has(chunks.hashes[i])) doneBytes += chunks.lengths[i];
        else missing.push(i);
      }
      const progress = new ProgressMeter("hoard", chunks.totalBytes, doneBytes);
      this.#hoardProgress.set(name, progress);
      this.#track(name, progress);
      this.#changed();
      // At the prefetcher's level (not its adaptive rate: the user asked for this), so
      // a running guest's demand reads and trace replay go first.
      const scheduler = this.#options.scheduler;
      const fetch = (hash: Uint8Array) => repo.readChunk(hash);
      const scheduled = scheduler
        ? (hash: Uint8Array) => scheduler.run("prefetch", () => fetch(hash))
        : fetch;
      let lastEvent = Date.now();
      let next = 0;
      const worker = async () => {
        while (next < missing.length) {
          const i = missing[next++];
          await this.#cache.get(chunks.hashes[i], scheduled);
          progress.advance(chunks.lengths[i]);
          if (Date.now() - lastEvent > 500) {
            lastEvent = Date.now();
            this.#changed();
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
      if (!this.#db.get(name).hoarded) {
        // Unhoarded while this ran.
        this.#cache.unpin(owner);
        return;
      }
      // The new version is safe offline: only now do the older versions' pins go.
      for (const other of this.#cache.pinOwners(`hoard:${name}:`)) {
        if (other !== owner) this.#cache.unpin(other);
      }
      this.#db.update(name, { hoardedVersion: version.number });
      this.#hoardFailedAt.delete(name);
      if (this.#errors.get(name)?.startsWith("hoarding failed")) this.#errors.delete(name);
    });
  }

  async #withRepo<T>(
    location: string,
    fn: (repo: Repository, store: MirroredStore) => Promise<T>,
  ): Promise<T> {
    const store = this.#openStore(location);
    try {
      return await fn(await Repository.open(store, undefined, { keyLists: false }), store);
    } finally {
      await store.close();
    }
  }

  /** `#withRepo` for an added appliance: its repository held to the appliance's pins. */
  async #withTrustedRepo<T>(
    record: ApplianceRecord,
    fn: (repo: Repository, store: MirroredStore, problem: string | null) => Promise<T>,
  ): Promise<T> {
    const store = this.#openStore(record.repo);
    try {
      let problem: string | null = null;
      const repo = await this.#openTrusted(record, store, (p) => problem = p);
      return await fn(repo, store, problem);
    } finally {
      await store.close();
    }
  }

  /**
   * Opens the repository of `record` held to its pins (`RepoTrust.apply`): the pinned
   * keys instead of repo.json's, the highest version accepted as the floor.
   */
  async #openTrusted(
    record: ApplianceRecord,
    store: MirroredStore,
    onProblem?: (problem: string | null) => void,
  ): Promise<Repository> {
    const repo = await Repository.open(store, undefined, { keyLists: false });
    const problem = await this.#trust.apply(record.name, repo, !store.offline);
    if (problem) console.error(`${record.name}: ${problem}`);
    onProblem?.(problem);
    return repo;
  }

  /** The repository at `location`, its metadata mirrored under `mirror/` for offline use. */
  #openStore(location: string): MirroredStore {
    const id = createHash("sha256").update(location).digest("hex").slice(0, 32);
    return new MirroredStore({
      location,
      // A server that does not answer is the mirror's business (it answers at once);
      // one that answers busy (429, 503) is retried with backoff (docs/FORMAT.md).
      open: () => openStore(location, { retry: { onlyAnswered: true } }),
      mirrorDir: `${this.#stateDir}/mirror/${id}`,
    });
  }

  #running(name: string): ApplianceRun {
    this.#db.get(name);
    const run = this.#runs.get(name);
    if (!run) throw new UsageError(`appliance "${name}" is not running`);
    return run;
  }

  #notRunning(name: string, what: string): void {
    if (this.#runs.has(name) || this.#busy.has(name)) {
      throw new ConflictError(`appliance "${name}" is running; stop it before you ${what} it`);
    }
  }

  async #dropMemoryImage(name: string): Promise<void> {
    await removeIfThere(`${this.#dirs(name).dir}/memory.img`);
    await removeIfThere(`${this.#dirs(name).dir}/memory.json`);
    this.#db.update(name, { suspendedVersion: null });
  }

  #dirs(name: string) {
    return {
      dir: `${this.#stateDir}/appliances/${name}`,
      runDir: `${this.#stateDir}/run/${name}`,
    };
  }

  /** The backup of a subscribed appliance; `UsageError` when there is none. */
  async #backupOf(name: string): Promise<SubscriptionBackup> {
    const record = this.#db.get(name);
    if (!this.#backups) {
      throw new UsageError(
        `nothing is backed up on this VAT: start it with --data-repo REPO --user-key FILE`,
      );
    }
    if (record.userBaseVersion === null) {
      throw new UsageError(`"${name}" has no user disk yet (start it once first)`);
    }
    return await this.#backups.subscription(name, `${this.#dirs(name).dir}/backup`);
  }

  /** Snapshots the running appliance now and then. */
  #startSnapshots(name: string, backup: SubscriptionBackup, run: ApplianceRun): void {
    const interval = this.#backups!.config.snapshotIntervalMs ?? DEFAULT_SNAPSHOT_INTERVAL_MS;
    const timer = setInterval(() => {
      this.#snapshotRun(name, backup, run, "periodic").catch(() => {});
    }, interval);
    Deno.unrefTimer(timer);
    this.#snapshotTimers.set(name, timer);
  }

  /** Queues a snapshot of `run`'s user disk and wakes the uploader. */
  async #snapshotRun(
    name: string,
    backup: SubscriptionBackup,
    run: ApplianceRun,
    reason: "start" | "stop" | "periodic" | "now",
  ): Promise<void> {
    const overlay = run.user?.overlay;
    if (!overlay) return;
    await this.#snapshotOverlay(name, backup, overlay, run.version, reason);
  }

  async #snapshotOverlay(
    name: string,
    backup: SubscriptionBackup,
    overlay: CowOverlay,
    version: Version,
    reason: "start" | "stop" | "periodic" | "now",
    onFrozen?: () => void,
  ): Promise<void> {
    try {
      await backup.snapshot(overlay, reason, version.manifest.vm, onFrozen);
    } catch (err) {
      console.error(`backup ${name}: the ${reason} snapshot failed: ${(err as Error).message}`);
      throw err;
    } finally {
      this.#backups!.kick();
      this.#changed();
    }
  }

  /** Snapshots what a stopped appliance's user disk changed since its last snapshot. */
  async #snapshotStopped(record: ApplianceRecord): Promise<void> {
    const path = `${this.#dirs(record.name).dir}/user.overlay`;
    if (!(await CowOverlay.inspect(path)).dirty) return;
    const backup = await this.#backupOf(record.name);
    const base = backup.outbox.state().base;
    const disk = base
      ? await (async () => {
        const dataRepo = backup.repoOf(base.series);
        const version = await dataRepo.readVersion(base.version);
        return await openVersionDisk(dataRepo, version, "user", this.#backups!.cache, {
          overlayPath: path,
        });
      })()
      : await this.#withTrustedRepo(record, async (repo) => {
        const version = await repo.readVersion(record.userBaseVersion!);
        return await openVersionDisk(repo, version, "user", this.#cache, { overlayPath: path });
      });
    try {
      const vm = backup.outbox.queued().at(-1)?.vm ??
        await this.#withTrustedRepo(record, async (repo) => {
          const n = record.lastVersion ?? record.userBaseVersion!;
          return (await repo.readVersion(n)).manifest.vm;
        });
      await backup.snapshot(disk.overlay as CowOverlay, "stop", vm);
    } finally {
      await disk.device.close();
    }
  }

  /**
   * Starts the run, the guest's reads as demand fetches, replaying the version's boot
   * trace ahead of them when it has one and the guest boots (not when it resumes).
   */
  async #startRun(name: string, spec: RunSpec): Promise<ApplianceRun> {
    const scheduler = this.#options.scheduler;
    if (!scheduler) return await startApplianceRun(spec);
    const { repo, version } = spec;
    // A resumed guest is past its boot: a boot trace would fetch what it may never read.
    const replay = spec.resumeFrom
      ? null
      : await startTraceReplay({ repo, version, cache: this.#cache, scheduler });
    if (replay) {
      this.#track(name, replay.meter);
      replay.done.then(() => {
        this.#untrack(name, replay.meter);
        console.error(
          `${name}: boot trace of version ${version.number} replayed, ` +
            `${replay.issued.length} chunks fetched ahead of the guest`,
        );
      });
    }
    try {
      const userDisk = spec.userDisk;
      const run = await startApplianceRun({
        ...spec,
        fetch: scheduler.demandFetcher((hash) => repo.readChunk(hash)),
        // The user disk's base may be in the user's data repository: its own fetches.
        userDisk: userDisk &&
          { ...userDisk, fetch: scheduler.demandFetcher((hash) => userDisk.repo.readChunk(hash)) },
        onDisk: replay ? (disk, base) => replay.attach(disk, base) : undefined,
      });
      replay?.allAttached();
      const stop = () => replay?.stop();
      run.ended.then(stop, stop);
      return run;
    } catch (err) {
      replay?.stop();
      throw err;
    }
  }

  /** Shows `meter` in the appliance's `operations` until `#untrack`. */
  #track(name: string, meter: ProgressMeter): void {
    let set = this.#operations.get(name);
    if (!set) this.#operations.set(name, set = new Set());
    set.add(meter);
    this.#changed();
  }

  #untrack(name: string, meter: ProgressMeter): void {
    this.#operations.get(name)?.delete(meter);
    this.#changed();
  }

  #changed(): void {
    this.dispatchEvent(new Event("change"));
  }
}

function _defaultName(repo: string): string {
  const last = repo.replace(/[/@]+$/, "").split(/[/:]/).pop() ?? "appliance";
  return last.toLowerCase().replace(/[^a-z0-9._-]/g, "-").replace(/^[^a-z0-9]+/, "") || "appliance";
}

async function _readVersionOrNull(repo: Repository, n: number | null): Promise<Version | null> {
  if (n === null) return null;
  try {
    return await repo.readVersion(n);
  } catch (err) {
    if (err instanceof NotFoundError) {
      throw new PermanentError(
        `the user disk's base, version ${n}, is gone from the repository (deleted by gc?); ` +
          `the user disk cannot be opened`,
        { cause: err },
      );
    }
    throw err;
  }
}

function _withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new VatError(`no answer within ${ms} ms`)), ms);
    }),
  ]);
}
