/**
 * The appliances on this VAT and what a user does with them (the paper's operations):
 * start (the newest version; resuming a memory image of that same version), stop
 * (ACPI powerdown, then a hard quit), suspend (memory image on local storage), reset
 * (the ephemeral disk and memory image go, the user disk stays), delete (the
 * subscription and its user disk), and publish (an administrator's running system
 * disk becomes the next version). Changes are announced as "change" events.
 *
 * The parts live beside it: `appliance_repos.ts` (repositories through their mirror,
 * held to their pins), `hoards.ts` (offline use), `appliance_backups.ts` (snapshots),
 * `appliance_status.ts` (what a status shows), `version_holdings.ts` (how much of a
 * version is cached), `memory_images.ts` (suspended appliances), `appliance_operations.ts`
 * (long operations' progress), `appliance_run.ts` (one run's disks, NBD server and QEMU).
 *
 * @module
 */

import type { ChunkCache } from "../cache/chunk_cache.ts";
import { ConflictError, TransientError, UsageError } from "../errors.ts";
import type { PublishResult } from "../repo/publish.ts";
import { redactLocation } from "../repo/open_store.ts";
import type { MirroredStore } from "../repo/store_mirrored.ts";
import { formatBytes } from "../progress.ts";
import { removeIfThere } from "../fs_atomic.ts";
import { runDirPaths } from "../vmm/run_dir.ts";
import { readBootTrace } from "../repo/boot_trace.ts";
import type { AcceleratorChoice } from "../vmm/accelerator.ts";
import type { Backups } from "../backup/backups.ts";
import type { SnapshotEntry, SubscriptionBackup } from "../backup/subscription_backup.ts";
import { CowOverlay } from "../disk/cow_overlay.ts";
import type { FetchScheduler } from "../fetch/fetch_scheduler.ts";
import type { PrefetchTarget } from "../prefetch/prefetcher.ts";
import {
  type ApplianceRun,
  type RunSpec,
  startApplianceRun,
  type UserDiskSpec,
} from "./appliance_run.ts";
import { ApplianceBackups } from "./appliance_backups.ts";
import { publishRunning } from "./publish_running.ts";
import { startScheduledRun } from "./scheduled_run.ts";
import { ApplianceOperations } from "./appliance_operations.ts";
import { ApplianceRepos, readVersionOrNull } from "./appliance_repos.ts";
import { type ApplianceStatus, composeStatus, RepoViews } from "./appliance_status.ts";
import { MemoryImages } from "./memory_images.ts";
import { type ApplianceHeatMap, HeatMaps } from "./heat_map.ts";
import { Hoards } from "./hoards.ts";
import { prefetchTargetsOf } from "./prefetch_targets.ts";
import { RepoTrust } from "./repo_trust.ts";
import { type ApplianceRecord, checkApplianceName, type StateDb } from "./state_db.ts";
import { VersionHoldings } from "./version_holdings.ts";

export type { ApplianceStatus } from "./appliance_status.ts";

/** How `start` treats a subscription another VAT holds. */
export interface StartOptions {
  /** Take it over: the other VAT keeps its unsent changes as a fork. */
  takeOver?: boolean;
  /** Continue here in a new subscription (a fork). */
  fork?: boolean;
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

/** The appliances of one VAT. */
export class Appliances extends EventTarget {
  readonly #db: StateDb;
  readonly #cache: ChunkCache;
  readonly #stateDir: string;
  readonly #runs = new Map<string, ApplianceRun>();
  readonly #busy = new Map<string, ApplianceStatus["state"]>();
  readonly #errors = new Map<string, string>();
  readonly #options: AppliancesOptions;
  readonly #backups: Backups | null;
  readonly #heatMaps = new WeakMap<ApplianceRun, HeatMaps>();
  readonly #trust: RepoTrust;
  readonly #repos: ApplianceRepos;
  readonly #holdings: VersionHoldings;
  readonly #operations: ApplianceOperations;
  readonly #hoards: Hoards;
  readonly #views: RepoViews;
  /** The appliances' side of backups; null without a data repository. */
  readonly #runBackups: ApplianceBackups | null;
  readonly #memory: MemoryImages;

  constructor(db: StateDb, cache: ChunkCache, stateDir: string, options: AppliancesOptions = {}) {
    super();
    this.#db = db;
    this.#trust = new RepoTrust(db);
    this.#cache = cache;
    this.#stateDir = stateDir;
    this.#options = options;
    this.#backups = options.backups ?? null;
    this.#backups?.addEventListener("change", () => this.#changed());
    this.#repos = new ApplianceRepos(stateDir, this.#trust);
    this.#holdings = new VersionHoldings(cache);
    this.#memory = new MemoryImages(db, (name) => this.#dirs(name).dir);
    this.#operations = new ApplianceOperations(() => this.#changed());
    const changed = () => this.#changed();
    this.#hoards = new Hoards({
      db,
      cache,
      repos: this.#repos,
      trust: this.#trust,
      holdings: this.#holdings,
      operations: this.#operations,
      scheduler: options.scheduler,
      errors: this.#errors,
      changed,
    });
    this.#views = new RepoViews({
      db,
      repos: this.#repos,
      trust: this.#trust,
      holdings: this.#holdings,
      onNewVersion: () => options.onPrefetchNeeded?.(),
    });
    this.#runBackups = this.#backups
      ? new ApplianceBackups({
        db,
        cache,
        backups: this.#backups,
        repos: this.#repos,
        dirOf: (name) => this.#dirs(name).dir,
        changed,
      })
      : null;
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
    await this.#runBackups?.resume((name) => this.#runs.has(name));
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
    const trust = await this.#repos.withRepo(repo, async (r, store) => {
      const pinned = await this.#trust.pin(r, publishers?.length ? publishers : null);
      if (store.offline) {
        throw new TransientError(
          `${redactLocation(repo)} cannot be reached; add the appliance while connected`,
        );
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
      const trace = await this.#repos.withRepo(
        record.repo,
        (repo) => readBootTrace(repo, run.version),
      )
        .catch(() => null);
      maps = new HeatMaps(run.access, trace);
      this.#heatMaps.set(run, maps);
    }
    return { name: record.name, version: run.version.number, disks: maps.disks() };
  }

  /**
   * Every appliance as added: its name, its repository's location as given (with any
   * credentials in it, unlike the status, which redacts them) and whether it is hoarded;
   * for the user's profile, which must let another VAT add it again.
   */
  subscriptions(): { name: string; repo: string; hoarded: boolean }[] {
    return this.#db.list().map((r) => ({ name: r.name, repo: r.repo, hoarded: r.hoarded }));
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
      store = this.#repos.openStore(record.repo);
      const repo = await this.#repos.openTrusted(record, store);
      // Offline, "latest" is the newest version whose metadata the mirror holds.
      const version = await repo.resolveVersion("latest");
      this.#trust.checkRequired(name, version);
      this.#trust.accept(name, version);
      if (store.offline) await this.#hoards.checkSafeOffline(record, repo, version);
      else if (record.hoarded && record.hoardedVersion !== version.number) {
        // A newer version than the hoarded one: fetch and pin it while this one runs.
        this.#hoards.inBackground(name);
      }
      // The first start creates the subscription: its user disk starts as this
      // version's initial user disk and keeps that base from then on.
      if (record.userBaseVersion === null) {
        this.#db.update(name, { userBaseVersion: version.number });
        record.userBaseVersion = version.number;
      }
      const userBase = await readVersionOrNull(repo, record.userBaseVersion);
      const dirs = this.#dirs(name);
      let userDisk: UserDiskSpec | null = userBase
        ? { repo, version: userBase, cache: this.#cache }
        : null;
      let backup: SubscriptionBackup | null = null;
      if (this.#runBackups && userDisk && userBase?.manifest.disks.user) {
        const plan = await this.#runBackups.planStart(name, userDisk, options);
        backup = plan.backup;
        userDisk = plan.userDisk;
        backup.active = true;
        // A memory image knows the user disk it was suspended with: not a restored one.
        if (plan.discardedOverlay && record.suspendedVersion !== null) {
          await this.#memory.drop(name);
          record.suspendedVersion = null;
        }
      }
      const resumeFrom = await this.#memory.resumePoint(record, version.number);
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
          ...(subscription ? this.#runBackups!.runHooks(name, subscription, version) : {}),
        });
      } catch (err) {
        if (subscription) subscription.active = false;
        throw err;
      }
      if (resumeFrom) await this.#memory.drop(name);
      this.#runs.set(name, run);
      if (subscription) this.#runBackups!.schedule(name, subscription, run);
      this.#db.update(name, { lastVersion: version.number });
      // The run reads chunks through this store until QEMU exits.
      const runStore = store;
      store = null;
      run.ended.then((exit) => {
        runStore.close().catch(() => {});
        this.#runBackups?.stopSchedule(name);
        if (subscription) {
          subscription.active = false;
          this.#backups?.kick();
        }
        this.#runs.delete(name);
        this.#holdings.changed();
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
      await this.#memory.save(name, run);
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
    await this.#memory.drop(name);
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
    this.#hoards.unpinAll(name);
    this.#db.remove(name);
    this.#views.forget(name);
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
    await this.#hoards.set(name, on);
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
    return await this.#operations.run(
      name,
      "publish",
      (onProgress, onStart) =>
        publishRunning(run, record.repo, keyPath, this.#cache, onProgress, onStart),
    );
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
    if (run) await this.#runBackups!.snapshotRun(name, backup, run, "now");
    else await this.#runBackups!.snapshotStopped(this.#db.get(name));
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
    await this.#runBackups!.snapshotStopped(record);
    await backup.queueUndo(version);
    await CowOverlay.remove(`${this.#dirs(name).dir}/user.overlay`);
    await this.#memory.drop(name);
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
   * (`prefetch_targets.ts`).
   */
  prefetchTargets(): PrefetchTarget[] {
    return prefetchTargetsOf({
      db: this.#db,
      repos: this.#repos,
      trust: this.#trust,
      backups: this.#runBackups,
      operations: this.#operations,
      holdings: this.#holdings,
    });
  }

  /** Names of running appliances. */
  runningNames(): string[] {
    return [...this.#runs.keys()];
  }

  async #statusOf(record: ApplianceRecord): Promise<ApplianceStatus> {
    const name = record.name;
    const view = await this.#views.of(record);
    const latest = view.latest?.version;
    if (
      record.hoarded && !view.offline && latest !== undefined &&
      record.hoardedVersion !== latest && this.#hoards.retryDue(name)
    ) {
      // A newer version is published: fetch and pin it before calling it safe.
      this.#hoards.inBackground(name);
    }
    return composeStatus({
      record,
      run: this.#runs.get(name),
      busy: this.#busy.get(name),
      lastError: this.#errors.get(name) ?? null,
      view,
      backup: await this.#runBackups?.ofOrNull(record) ?? null,
      backupsEnabled: this.#backups !== null,
      hoard: this.#hoards.progressOf(name),
      hoarding: this.#hoards.isRunning(name),
      operations: this.#operations.of(name),
      accel: this.#options.accelerator?.current,
      trust: this.#trust.status(name, view.problem),
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

  #dirs(name: string) {
    return {
      dir: `${this.#stateDir}/appliances/${name}`,
      runDir: `${this.#stateDir}/run/${name}`,
    };
  }

  /** The backup of a subscribed appliance; `UsageError` when there is none. */
  async #backupOf(name: string): Promise<SubscriptionBackup> {
    if (!this.#runBackups) {
      throw new UsageError(
        `nothing is backed up on this VAT: start it with --data-repo REPO --user-key FILE`,
      );
    }
    return await this.#runBackups.of(name);
  }

  /** Starts the run, its fetches ordered by the scheduler when the VAT has one. */
  async #startRun(name: string, spec: RunSpec): Promise<ApplianceRun> {
    const scheduler = this.#options.scheduler;
    if (!scheduler) return await startApplianceRun(spec);
    return await startScheduledRun(spec, scheduler, this.#cache, (replay) => {
      this.#operations.track(name, replay.meter);
      replay.done.then(() => {
        this.#operations.untrack(name, replay.meter);
        console.error(
          `${name}: boot trace of version ${spec.version.number} replayed, ` +
            `${replay.issued.length} chunks fetched ahead of the guest`,
        );
      });
    });
  }

  #changed(): void {
    this.dispatchEvent(new Event("change"));
  }
}

function _defaultName(repo: string): string {
  const last = repo.replace(/[/@]+$/, "").split(/[/:]/).pop() ?? "appliance";
  return last.toLowerCase().replace(/[^a-z0-9._-]/g, "-").replace(/^[^a-z0-9]+/, "") || "appliance";
}
