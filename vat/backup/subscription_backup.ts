/**
 * The backup of one subscription's user disk (docs/BACKUP.md): snapshots of its
 * copy-on-write overlay into the local outbox, their upload as versions of the
 * subscription's series in the user's data repository, the lease that makes this VAT
 * the series' one writer, and what happens when another VAT wrote meanwhile (a fork:
 * local changes are never discarded, and never written over another VAT's versions).
 *
 * Sending and committing one snapshot: `snapshot_upload.ts`.
 *
 * @module
 */

import { randomUUID } from "node:crypto";
import { CowOverlay } from "../disk/cow_overlay.ts";
import { ConflictError, isRetryable, NotFoundError, TransientError } from "../errors.ts";
import { isAllZero } from "../repo/chunk_codec.ts";
import { DiskIndex } from "../repo/disk_index.ts";
import type { VmDescription } from "../repo/manifest.ts";
import type { Repository } from "../repo/repository.ts";
import { ProgressMeter } from "../progress.ts";
import type { RateLimiter } from "../rate_limiter.ts";
import type { DataRepository } from "./data_repository.ts";
import { Lease, type LeaseHolder } from "./lease.ts";
import { Outbox, type QueuedSnapshot, type SnapshotReason } from "./outbox.ts";
import { commitSnapshot, sendObjects } from "./snapshot_upload.ts";

/** What the API shows of a subscription's backup. */
export interface BackupStatus {
  /** A data repository is configured: the user disk is backed up. */
  enabled: boolean;
  /** The series in the data repository (the appliance's name, or a fork's). */
  series: string | null;
  /** Bytes still to upload: queued snapshots' new chunks, and changes not yet snapshotted. */
  pendingBytes: number;
  /** Snapshots waiting in the outbox. */
  pendingSnapshots: number;
  uploading: boolean;
  rateBytesPerSecond: number;
  /** The newest version of the series this VAT committed or restored. */
  lastVersion: number | null;
  /** When the newest committed snapshot was taken. */
  lastBackupAt: string | null;
  /** Why the last upload attempt failed (offline, the lease...), null when fine. */
  error: string | null;
  /** Why this VAT's changes went to a fork of the subscription, until dismissed. */
  forkNote: string | null;
}

/** One version or queued snapshot, as `vat snapshots` lists it. */
export interface SnapshotEntry {
  /** The committed version; null while queued. */
  version: number | null;
  state: "committed" | "queued";
  takenAt: string;
  reason: string;
  /** Bytes of the disk that are not all zeroes. */
  dataBytes: number;
  changedBytes: number;
  undoneTo: number | null;
}

/** How a start opens the user disk (see `SubscriptionBackup.prepareStart`). */
export interface StartPlan {
  /** The data-repository version the user disk grows from; null: the appliance's initial user disk. */
  base: { series: string; version: number } | null;
  /** Start the local overlay afresh (the disk becomes `base`). */
  discardOverlay: boolean;
  /** Count every chunk as changed (the first backup of a disk). */
  markAllDirty: boolean;
  /** The data repository could not be reached: the start runs on local state. */
  offline: boolean;
}

/** Options of `SubscriptionBackup.open`. */
export interface SubscriptionBackupOptions {
  data: DataRepository;
  /** The subscription's `backup/` directory. */
  dir: string;
  /** The appliance's name: the series' name unless forked. */
  name: string;
  vatId: string;
  limiter: RateLimiter;
  /**
   * Runs one upload request when the link is the backup's turn (the VAT's fetch
   * scheduler, at its lowest level); default: at once.
   */
  schedule?: <T>(task: () => Promise<T>) => Promise<T>;
  leaseTtlMs?: number;
}

/** Thrown when another VAT holds the subscription. */
export class SubscriptionHeldError extends ConflictError {
  readonly holder: LeaseHolder;
  constructor(name: string, holder: LeaseHolder) {
    super(
      `"${name}" is in use on another VAT (${holder.host}, id ${holder.vatId.slice(0, 8)}, ` +
        `last seen ${Math.round(holder.silentMs / 1000)} s ago). Start it here with --take-over ` +
        `(that VAT keeps its unsent changes as a fork) or --fork (this VAT continues in a new ` +
        `subscription); or stop it there first`,
    );
    this.holder = holder;
  }
}

/** Bytes of saved chunks a snapshot seals in the background before a save waits. */
const MAX_SEALING_BYTES = 32 * 1024 * 1024;

/** One subscription's backup. */
export class SubscriptionBackup {
  readonly name: string;
  readonly outbox: Outbox;
  /** The appliance runs: the lease is kept even when nothing waits for upload. */
  active = false;
  readonly #data: DataRepository;
  readonly #options: SubscriptionBackupOptions;
  #lease: Lease;
  #meter: ProgressMeter | null = null;
  /** Bytes of the snapshot being uploaded that were sent (its objects are still queued). */
  #sentOfCurrent = 0;
  #error: string | null = null;
  #snapshotting: Promise<unknown> = Promise.resolve();
  #uploading: Promise<void> | null = null;
  #stopping = false;

  private constructor(options: SubscriptionBackupOptions, outbox: Outbox) {
    this.name = options.name;
    this.outbox = outbox;
    this.#data = options.data;
    this.#options = options;
    this.#lease = this.#leaseOf(outbox.state().series);
  }

  static async open(options: SubscriptionBackupOptions): Promise<SubscriptionBackup> {
    return new SubscriptionBackup(options, await Outbox.open(options.dir, options.name));
  }

  /** The series this VAT writes. */
  get series(): string {
    return this.outbox.state().series;
  }

  /** The series `series` as a repository. */
  repoOf(series = this.series): Repository {
    return this.#data.subscription(series);
  }

  /** The upload running now, with its progress (null when idle). */
  get meter(): ProgressMeter | null {
    return this.#meter;
  }

  /**
   * Decides how a start opens the user disk, taking the lease: a new subscription
   * uploads its whole disk; a fresh VAT restores the newest version; a VAT whose series
   * moved on while it had no unsent changes follows it; one with unsent changes keeps
   * them as a fork. Throws `SubscriptionHeldError` when another live VAT holds it
   * (unless `takeOver` or `fork`).
   */
  async prepareStart(
    local: { hasDisk: boolean; dirty: boolean; overlayPath?: string },
    options: { takeOver?: boolean; fork?: boolean } = {},
  ): Promise<StartPlan> {
    const state = this.outbox.state();
    const pending = local.dirty || this.outbox.queuedCount() > 0;
    // The local disk as it is; all of it counts as changed while nothing of it was
    // ever snapshotted (a new subscription, or one backed up for the first time).
    const keep = (): StartPlan => ({
      base: this.outbox.state().base,
      discardOverlay: false,
      markAllDirty: this.outbox.latestIndex() === null,
      offline: false,
    });
    let latest: number | null;
    let holder: LeaseHolder | null;
    try {
      holder = await this.#lease.acquire({ takeOver: options.takeOver });
      latest = await this.repoOf().latestVersion();
    } catch (err) {
      if (!isRetryable(err)) throw err;
      if (!local.hasDisk && state.committedVersion === null && state.base === null) {
        // Nothing local yet: the newest backup may exist, so starting empty could fork.
        throw new TransientError(
          `the data repository ${this.#data.store.location} cannot be reached and this VAT ` +
            `has no copy of "${this.name}"'s user disk yet; connect and try again`,
          { cause: err },
        );
      }
      return { ...keep(), offline: true };
    }
    if (holder) {
      if (!options.fork) throw new SubscriptionHeldError(this.name, holder);
      const from = state.series;
      await this.#forkSeries(`forked from "${from}", which ${holder.host} holds`);
      if (local.hasDisk || state.base !== null || latest === null) return keep();
      // A fresh VAT: the fork starts from the newest backup of the original series.
      const index = await this.#indexOf(from, latest);
      this.outbox.setCommitted(null, index, { base: { series: from, version: latest } });
      await this.#queueSnapshot(index, "first", await this.#vmOf(from, latest), {
        undoneTo: undefined,
      });
      return {
        base: { series: from, version: latest },
        discardOverlay: true,
        markAllDirty: false,
        offline: false,
      };
    }
    if (latest === state.committedVersion) return keep();
    if (latest !== null && state.committedVersion === null && !local.hasDisk && !pending) {
      // A fresh VAT: the newest backup becomes the disk, fetched lazily.
      return await this.#follow(latest, local.overlayPath);
    }
    if (
      latest !== null && state.committedVersion !== null && latest > state.committedVersion &&
      !pending
    ) {
      // Another VAT wrote newer versions and this one has nothing unsent: follow them.
      return await this.#follow(latest, local.overlayPath);
    }
    // Versions this VAT never saw, and changes of its own: both are kept.
    await this.#forkSeries(
      `"${state.series}" has versions written by another VAT since this one last uploaded`,
    );
    return keep();
  }

  /**
   * Takes a snapshot of `overlay` as it is now and queues it (null when nothing changed
   * since the last one). The guest may keep writing meanwhile: chunks it overwrites
   * are copied first (`CowOverlay.beginSnapshot`). When the outbox outgrows the disk,
   * queued snapshots are collapsed. `onFrozen` is called once the snapshot's instant
   * is fixed (or it failed before), so a caller can let the guest run from then on.
   */
  snapshot(
    overlay: CowOverlay,
    reason: SnapshotReason,
    vm: VmDescription,
    onFrozen?: () => void,
  ): Promise<QueuedSnapshot | null> {
    const run = this.#snapshotting.then(() => this.#snapshot(overlay, reason, vm, onFrozen))
      .finally(() => onFrozen?.());
    this.#snapshotting = run.catch(() => {});
    return run;
  }

  async #snapshot(
    overlay: CowOverlay,
    reason: SnapshotReason,
    vm: VmDescription,
    onFrozen?: () => void,
  ): Promise<QueuedSnapshot | null> {
    const chunkBytes = overlay.preferredBlockBytes;
    const previous = this.outbox.latestIndex() ?? new DiskIndex(overlay.sizeBytes, chunkBytes);
    if (previous.sizeBytes !== overlay.sizeBytes || previous.chunkBytes !== chunkBytes) {
      throw new ConflictError(
        `the user disk of "${this.name}" (${overlay.sizeBytes} bytes) does not match its backup ` +
          `(${previous.sizeBytes} bytes)`,
      );
    }
    const index = new DiskIndex(previous.sizeBytes, chunkBytes, previous.hashes.slice());
    const writer = this.outbox.writer();
    const codec = this.#data.root.codec;
    let changedBytes = 0;
    // Sealing and writing a saved chunk runs beside the guest: a write that had to save
    // a chunk first waits only for the copy, unless too many are still being sealed.
    const sealing = new Set<Promise<void>>();
    let sealingBytes = 0;
    const chunks = overlay.beginSnapshot(async (i, content) => {
      const before = previous.hash(i);
      if (content === null || isAllZero(content)) {
        index.setHash(i, null);
        if (before) changedBytes += index.chunkLength(i);
        return;
      }
      const name = codec.nameOf(content);
      index.setHash(i, name);
      if (before && Buffer.from(before).equals(name)) return;
      changedBytes += index.chunkLength(i);
      const job = codec.encode(content, name).then((object) => writer.addObject(name, object));
      sealing.add(job);
      sealingBytes += content.length;
      job.catch(() => {}).finally(() => {
        sealing.delete(job);
        sealingBytes -= content.length;
      });
      if (sealingBytes > MAX_SEALING_BYTES) await job;
    });
    onFrozen?.();
    if (chunks.length === 0) {
      overlay.endSnapshot(true);
      return null;
    }
    try {
      let next = 0;
      const worker = async () => {
        while (next < chunks.length) await overlay.saveForSnapshot(chunks[next++]);
      };
      await Promise.all(Array.from({ length: 4 }, worker));
      while (sealing.size) await Promise.all(sealing);
      if (changedBytes === 0 && this.outbox.latestIndex() !== null) {
        // Rewritten with the same bytes: no new version.
        await writer.abandon();
        overlay.endSnapshot(true);
        return null;
      }
      const queued = await writer.commit(index, {
        id: randomUUID(),
        takenAt: new Date().toISOString(),
        reason,
        changedBytes,
        dataBytes: _dataBytes(index),
        vm: _runsOn(vm),
      });
      overlay.endSnapshot(true);
      await overlay.flush();
      if (this.outbox.pendingBytes() > overlay.sizeBytes) await this.outbox.collapse();
      return queued;
    } catch (err) {
      overlay.endSnapshot(false);
      await Promise.allSettled([...sealing]);
      await writer.abandon();
      throw err;
    }
  }

  /**
   * Queues an undo: a snapshot whose content is version `version`'s, committed again
   * as the newest version. Returns that version's index; the caller makes the local
   * disk equal to it. Nothing is deleted.
   */
  async queueUndo(version: number): Promise<{ series: string; version: number }> {
    const series = this.series;
    const index = await this.#indexOf(series, version);
    await this.#queueSnapshot(index, "undo", await this.#vmOf(series, version), {
      undoneTo: version,
    });
    this.outbox.updateState({ base: { series, version } });
    return { series, version };
  }

  /** Versions of the series (newest first), then the queued snapshots. */
  async list(): Promise<SnapshotEntry[]> {
    const repo = this.repoOf();
    const out: SnapshotEntry[] = [];
    for (const n of (await repo.listVersions()).reverse()) {
      const { manifest } = await repo.readVersion(n);
      const s = manifest.snapshot;
      out.push({
        version: n,
        state: "committed",
        takenAt: s?.takenAt ?? manifest.createdAt,
        reason: s?.reason ?? "",
        dataBytes: s?.dataBytes ?? 0,
        changedBytes: s?.changedBytes ?? 0,
        undoneTo: s?.undoneTo ?? null,
      });
    }
    const queued = this.outbox.queued().reverse().map((q): SnapshotEntry => ({
      version: null,
      state: "queued",
      takenAt: q.takenAt,
      reason: q.reason,
      dataBytes: q.dataBytes,
      changedBytes: q.changedBytes,
      undoneTo: q.undoneTo ?? null,
    }));
    return [...queued, ...out];
  }

  /** What the API shows; `dirtyBytes` are the overlay's changes not yet snapshotted. */
  status(dirtyBytes: number): BackupStatus {
    const state = this.outbox.state();
    const progress = this.#meter?.progress();
    return {
      enabled: true,
      series: state.series,
      pendingBytes: Math.max(0, this.outbox.pendingBytes() - this.#sentOfCurrent) + dirtyBytes,
      pendingSnapshots: this.outbox.queuedCount(),
      uploading: this.#uploading !== null,
      rateBytesPerSecond: progress?.rateBytesPerSecond ?? 0,
      lastVersion: state.committedVersion,
      lastBackupAt: state.lastBackupAt,
      error: this.#error,
      forkNote: state.forkNote,
    };
  }

  /** Uploads every queued snapshot (joins an upload already running). */
  upload(): Promise<void> {
    if (!this.#uploading) {
      this.#uploading = this.#uploadAll().then(
        () => {
          this.#error = null;
        },
        (err) => {
          this.#error = (err as Error).message;
          throw err;
        },
      ).finally(() => {
        this.#uploading = null;
        this.#meter = null;
        this.#sentOfCurrent = 0;
      });
    }
    return this.#uploading;
  }

  /** Lets the lease go when nothing is left to upload (the appliance stopped). */
  async releaseIfIdle(): Promise<void> {
    if (this.outbox.queuedCount() === 0) await this.#lease.release();
  }

  /** Renews the lease; a lease lost to another VAT turns unsent changes into a fork. */
  async renewLease(): Promise<void> {
    if (this.#lease.heldGeneration !== null && !(await this.#lease.renew())) {
      this.#error = `another VAT took over "${this.series}"`;
    }
  }

  /** Stops an upload at its next chunk (what was sent stays; the next start resumes). */
  stopUploading(): void {
    this.#stopping = true;
  }

  close(): void {
    this.outbox.close();
  }

  async #uploadAll(): Promise<void> {
    for (;;) {
      if (this.#stopping) return;
      const snapshot = this.outbox.oldest();
      if (!snapshot) return;
      await this.#uploadOne(snapshot);
    }
  }

  async #uploadOne(snapshot: QueuedSnapshot): Promise<void> {
    let state = this.outbox.state();
    let repo = this.repoOf(state.series);
    if (!(await this.#lease.stillHeld())) {
      const holder = await this.#lease.acquire();
      if (holder) {
        await this.#forkSeries(
          `"${state.series}" was taken over by ${holder.host} while this VAT had unsent changes`,
        );
        state = this.outbox.state();
        repo = this.repoOf(state.series);
      }
    }
    const latest = await repo.latestVersion();
    if (latest !== state.committedVersion) {
      // A crash after a commit leaves the outbox behind the series: find that commit.
      for (let n = (state.committedVersion ?? 0) + 1; latest !== null && n <= latest; n++) {
        const { manifest } = await repo.readVersion(n);
        if (manifest.snapshot?.id === snapshot.id) {
          await this.outbox.uploaded(snapshot, n);
          return;
        }
      }
      await this.#forkSeries(
        `"${state.series}" has versions written by another VAT since this one last uploaded`,
      );
      return; // the next round uploads into the fork
    }
    const meter = this.#meter ??= new ProgressMeter("backup", 0);
    // Snapshots queued while uploading add to the total.
    meter.totalBytes = meter.doneBytes + this.outbox.pendingBytes();
    this.#sentOfCurrent = 0;
    await sendObjects(snapshot, {
      repo,
      outbox: this.outbox,
      limiter: this.#options.limiter,
      schedule: this.#options.schedule,
      meter,
      stopping: () => this.#stopping,
      onSent: (bytes) => this.#sentOfCurrent += bytes,
    });
    if (!this.outbox.isQueued(snapshot.seq)) return; // collapsed into a newer one meanwhile
    const version = await commitSnapshot(snapshot, {
      repo,
      key: this.#data.key.signingKey,
      latest,
      series: state.series,
      vatId: this.#options.vatId,
      limiter: this.#options.limiter,
    });
    // Another VAT committed this number first; the next round sees it and forks.
    if (version === null) return;
    await this.outbox.uploaded(snapshot, version);
    this.#sentOfCurrent = 0;
    this.outbox.updateState({ lastBackupAt: snapshot.takenAt });
  }

  /**
   * The disk follows version `latest` of the series (restored or followed). The old
   * overlay goes before the state says so: a start that fails after this must not
   * find it over the new base.
   */
  async #follow(latest: number, overlayPath?: string): Promise<StartPlan> {
    const series = this.series;
    const index = await this.#indexOf(series, latest);
    const base = { series, version: latest };
    if (overlayPath) await CowOverlay.remove(overlayPath);
    this.outbox.setCommitted(latest, index, { base });
    return { base, discardOverlay: true, markAllDirty: false, offline: false };
  }

  /** Moves this VAT's unsent changes to a new series; the old one is left as it is. */
  async #forkSeries(reason: string): Promise<void> {
    const from = this.series;
    const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "").toLowerCase();
    const series = `${from.replace(/-fork-\d{8}t\d{6}z?$/, "")}-fork-${stamp}z`;
    await this.#lease.release().catch(() => {});
    this.outbox.updateState({
      series,
      committedVersion: null,
      forkNote: `${reason}; this VAT's changes continue in "${series}"`,
    });
    this.#lease = this.#leaseOf(series);
    await this.#lease.acquire();
  }

  async #queueSnapshot(
    index: DiskIndex,
    reason: SnapshotReason,
    vm: VmDescription,
    extra: { undoneTo?: number },
  ): Promise<void> {
    await this.outbox.writer().commit(index, {
      id: randomUUID(),
      takenAt: new Date().toISOString(),
      reason,
      changedBytes: 0,
      dataBytes: _dataBytes(index),
      vm: _runsOn(vm),
      ...extra,
    });
  }

  async #indexOf(series: string, version: number): Promise<DiskIndex> {
    const repo = this.repoOf(series);
    const { manifest } = await repo.readVersion(version);
    const entry = manifest.disks.user;
    if (!entry) throw new NotFoundError(`version ${version} of "${series}" has no user disk`);
    return await repo.readDiskIndex(entry.index);
  }

  async #vmOf(series: string, version: number): Promise<VmDescription> {
    return (await this.repoOf(series).readVersion(version)).manifest.vm;
  }

  #leaseOf(series: string): Lease {
    return new Lease(
      this.#data.subscription(series).store,
      this.#options.vatId,
      this.#options.leaseTtlMs,
    );
  }
}

/**
 * The VM description a data version records: what the disk ran with, without the
 * appliance's boot files (they are not in the data repository).
 */
function _runsOn(vm: VmDescription): VmDescription {
  return { memoryMiB: vm.memoryMiB, cpus: vm.cpus };
}

function _dataBytes(index: DiskIndex): number {
  let bytes = 0;
  for (const [i] of index.dataChunks()) bytes += index.chunkLength(i);
  return bytes;
}
