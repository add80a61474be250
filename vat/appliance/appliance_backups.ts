/**
 * The appliances' side of backups (docs/BACKUP.md): which user disk a start opens
 * (the subscription's own, or a version restored from the data repository), the
 * snapshots of a run (at its start, every interval, at its stop, on request) and of a
 * stopped appliance's disk that a killed daemon left unsnapshotted.
 *
 * @module
 */

import type { ChunkCache } from "../cache/chunk_cache.ts";
import { type Backups, DEFAULT_SNAPSHOT_INTERVAL_MS } from "../backup/backups.ts";
import type { SubscriptionBackup } from "../backup/subscription_backup.ts";
import { CowOverlay } from "../disk/cow_overlay.ts";
import { openVersionDisk } from "../disk/version_disk.ts";
import { UsageError } from "../errors.ts";
import type { Version } from "../repo/repository.ts";
import type { ApplianceRun, RunSpec, UserDiskSpec } from "./appliance_run.ts";
import type { ApplianceRepos } from "./appliance_repos.ts";
import type { ApplianceRecord, StateDb } from "./state_db.ts";

/** Why a snapshot is taken. */
export type SnapshotReason = "start" | "stop" | "periodic" | "now";

/** What the appliances' backups work with. */
export interface ApplianceBackupsContext {
  db: StateDb;
  /** The appliance repositories' chunk cache (a stopped disk's base is read through it). */
  cache: ChunkCache;
  backups: Backups;
  repos: ApplianceRepos;
  /** The directory of an appliance's files (its overlays, its outbox under `backup/`). */
  dirOf(name: string): string;
  changed(): void;
}

/** How a start uses the user disk, as the subscription's backup decided. */
export interface UserDiskPlan {
  backup: SubscriptionBackup;
  userDisk: UserDiskSpec;
  /** The local overlay was set aside: a memory image of it is stale too. */
  discardedOverlay: boolean;
}

/** The backups of one VAT's appliances. */
export class ApplianceBackups {
  readonly #ctx: ApplianceBackupsContext;
  readonly #timers = new Map<string, ReturnType<typeof setInterval>>();

  constructor(ctx: ApplianceBackupsContext) {
    this.#ctx = ctx;
  }

  /** The backup of a subscribed appliance; `UsageError` when there is none. */
  async of(name: string): Promise<SubscriptionBackup> {
    const record = this.#ctx.db.get(name);
    if (record.userBaseVersion === null) {
      throw new UsageError(`"${name}" has no user disk yet (start it once first)`);
    }
    return await this.#subscription(name);
  }

  /** The backup of `record` if it is subscribed and can be opened, else null (for status). */
  async ofOrNull(record: ApplianceRecord): Promise<SubscriptionBackup | null> {
    if (record.userBaseVersion === null) return null;
    return await this.#subscription(record.name).catch(() => null);
  }

  /**
   * For a start: the subscription's backup, and the user disk to open over `userDisk`
   * (the appliance's base): the local overlay as it is, or a version of the data
   * repository to restore or follow (`SubscriptionBackup.prepareStart`).
   */
  async planStart(
    name: string,
    userDisk: UserDiskSpec,
    options: { takeOver?: boolean; fork?: boolean },
  ): Promise<UserDiskPlan> {
    const backup = await this.#subscription(name);
    const overlayPath = `${this.#ctx.dirOf(name)}/user.overlay`;
    const local = await CowOverlay.inspect(overlayPath);
    const plan = await backup.prepareStart(
      { hasDisk: local.exists, dirty: local.dirty, overlayPath },
      options,
    );
    let disk = userDisk;
    if (plan.base) {
      const dataRepo = backup.repoOf(plan.base.series);
      disk = {
        repo: dataRepo,
        version: await dataRepo.readVersion(plan.base.version),
        cache: this.#ctx.backups.cache,
      };
    }
    return {
      backup,
      userDisk: { ...disk, discardOverlay: plan.discardOverlay, markAllDirty: plan.markAllDirty },
      discardedOverlay: plan.discardOverlay,
    };
  }

  /**
   * Whether a start of `record` reads its user disk from the data repository (restored
   * there, or maybe so at a first start: a fresh VAT restores the newest backup), not
   * from the appliance's repository.
   */
  async userDiskFromDataRepo(record: ApplianceRecord): Promise<boolean> {
    if (record.userBaseVersion === null) return true;
    return (await this.#subscription(record.name)).outbox.state().base !== null;
  }

  /** Snapshots `run`'s user disk every interval until `stopSchedule(name)`. */
  schedule(name: string, backup: SubscriptionBackup, run: ApplianceRun): void {
    const interval = this.#ctx.backups.config.snapshotIntervalMs ?? DEFAULT_SNAPSHOT_INTERVAL_MS;
    const timer = setInterval(() => {
      this.snapshotRun(name, backup, run, "periodic").catch(() => {});
    }, interval);
    Deno.unrefTimer(timer);
    this.#timers.set(name, timer);
  }

  stopSchedule(name: string): void {
    clearInterval(this.#timers.get(name));
    this.#timers.delete(name);
  }

  /** Queues a snapshot of `run`'s user disk and wakes the uploader. */
  async snapshotRun(
    name: string,
    backup: SubscriptionBackup,
    run: ApplianceRun,
    reason: SnapshotReason,
  ): Promise<void> {
    const overlay = run.user?.overlay;
    if (!overlay) return;
    await this.snapshotOverlay(name, backup, overlay, run.version, reason);
  }

  /**
   * The snapshots a run of `name` takes at its edges: the first one's instant is before
   * the guest runs (its copying goes on while the guest boots; copy-before-write keeps
   * it exact), the last one after the guest stopped.
   */
  runHooks(
    name: string,
    backup: SubscriptionBackup,
    version: Version,
  ): Pick<RunSpec, "beforeBoot" | "beforeClose"> {
    return {
      beforeBoot: ({ user }) =>
        new Promise<void>((frozen) => {
          if (!user?.overlay) return frozen();
          // A failed snapshot (said in the log) must not keep the guest from booting.
          this.snapshotOverlay(name, backup, user.overlay, version, "start", frozen)
            .catch(() => frozen());
        }),
      beforeClose: (ended) => this.snapshotRun(name, backup, ended, "stop"),
    };
  }

  /** Queues a snapshot of `overlay`; `onFrozen` runs once its instant is taken. */
  async snapshotOverlay(
    name: string,
    backup: SubscriptionBackup,
    overlay: CowOverlay,
    version: Version,
    reason: SnapshotReason,
    onFrozen?: () => void,
  ): Promise<void> {
    try {
      await backup.snapshot(overlay, reason, version.manifest.vm, onFrozen);
    } catch (err) {
      console.error(`backup ${name}: the ${reason} snapshot failed: ${(err as Error).message}`);
      throw err;
    } finally {
      this.#ctx.backups.kick();
      this.#ctx.changed();
    }
  }

  /** Snapshots what a stopped appliance's user disk changed since its last snapshot. */
  async snapshotStopped(record: ApplianceRecord): Promise<void> {
    const path = `${this.#ctx.dirOf(record.name)}/user.overlay`;
    if (!(await CowOverlay.inspect(path)).dirty) return;
    const backup = await this.of(record.name);
    const base = backup.outbox.state().base;
    const { repos, cache } = this.#ctx;
    const disk = base
      ? await (async () => {
        const dataRepo = backup.repoOf(base.series);
        const version = await dataRepo.readVersion(base.version);
        return await openVersionDisk(dataRepo, version, "user", this.#ctx.backups.cache, {
          overlayPath: path,
        });
      })()
      : await repos.withTrusted(record, async (repo) => {
        const version = await repo.readVersion(record.userBaseVersion!);
        return await openVersionDisk(repo, version, "user", cache, { overlayPath: path });
      });
    try {
      const vm = backup.outbox.queued().at(-1)?.vm ??
        await repos.withTrusted(record, async (repo) => {
          const n = record.lastVersion ?? record.userBaseVersion!;
          return (await repo.readVersion(n)).manifest.vm;
        });
      await backup.snapshot(disk.overlay as CowOverlay, "stop", vm);
    } finally {
      await disk.device.close();
    }
  }

  /**
   * Queues what a killed daemon left unsnapshotted on the user disks of stopped
   * appliances (`isRunning` says which run), and starts uploading every outbox.
   */
  async resume(isRunning: (name: string) => boolean): Promise<void> {
    for (const record of this.#ctx.db.list()) {
      if (record.userBaseVersion === null || isRunning(record.name)) continue;
      try {
        await this.#subscription(record.name); // opened, so the uploader sees its outbox
        await this.snapshotStopped(record);
      } catch (err) {
        console.error(`backup ${record.name}: ${(err as Error).message}`);
      }
    }
    this.#ctx.backups.kick();
  }

  #subscription(name: string): Promise<SubscriptionBackup> {
    return this.#ctx.backups.subscription(name, `${this.#ctx.dirOf(name)}/backup`);
  }
}
