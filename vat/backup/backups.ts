/**
 * The VAT's backups (docs/BACKUP.md): the user's data repository, opened with their
 * key; one `SubscriptionBackup` per appliance; the cache of the user's own chunks
 * (separate from the appliances' cache: named by the user's keyed hash); and the
 * uploader that drains every outbox in the background, yielding to demand fetches,
 * within a bandwidth cap, and retrying by itself while the repository is unreachable.
 *
 * @module
 */

import { randomUUID } from "node:crypto";
import { loadUserKey, type UserKey } from "../auth/user_key.ts";
import { ChunkCache } from "../cache/chunk_cache.ts";
import { isRetryable, TransientError } from "../errors.ts";
import { writeFileAtomic } from "../fs_atomic.ts";
import { openStore } from "../repo/open_store.ts";
import { MirroredStore } from "../repo/store_mirrored.ts";
import { RateLimiter } from "../rate_limiter.ts";
import { DataRepository } from "./data_repository.ts";
import { LEASE_TTL_MS } from "./lease.ts";
import { SubscriptionBackup } from "./subscription_backup.ts";

/** How the daemon backs user disks up (`vat --data-repo REPO --user-key FILE`). */
export interface BackupConfig {
  dataRepo: string;
  userKeyPath: string;
  /** Snapshots while an appliance runs, this often (default five minutes). */
  snapshotIntervalMs?: number;
  /** Upload cap in bytes per second; 0 for none. */
  uploadBytesPerSecond?: number;
  leaseTtlMs?: number;
  /** Budget of the user-data cache (default 2 GiB). */
  cacheBytes?: number;
}

/** How long the uploader waits before it tries an unreachable repository again. */
const RETRY_MS = 5_000;
/** How often a running upload says that the status changed (its progress). */
const PROGRESS_EVENT_MS = 500;
export const DEFAULT_SNAPSHOT_INTERVAL_MS = 5 * 60_000;

/** The backups of one VAT. */
export class Backups extends EventTarget {
  readonly config: BackupConfig;
  readonly key: UserKey;
  readonly cache: ChunkCache;
  readonly vatId: string;
  readonly limiter: RateLimiter;
  readonly #stateDir: string;
  readonly #data: DataRepository;
  readonly #subscriptions = new Map<string, Promise<SubscriptionBackup>>();
  /**
   * Set by the daemon: runs one upload request at the backup level of the VAT's fetch
   * scheduler, below demand reads, trace replay and prefetch.
   */
  schedule: <T>(task: () => Promise<T>) => Promise<T> = (task) => task();
  #timer: ReturnType<typeof setTimeout> | null = null;
  #renewTimer: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #pass: Promise<void> = Promise.resolve();

  private constructor(
    config: BackupConfig,
    stateDir: string,
    key: UserKey,
    data: DataRepository,
    cache: ChunkCache,
    vatId: string,
  ) {
    super();
    this.config = config;
    this.key = key;
    this.cache = cache;
    this.vatId = vatId;
    this.limiter = new RateLimiter(config.uploadBytesPerSecond ?? 0);
    this.#stateDir = stateDir;
    this.#data = data;
  }

  /**
   * Loads the key and opens (creating it when absent) the data repository. A wrong or
   * missing key fails here, before anything is written. The repository's metadata is
   * mirrored in the state directory, so once it was reached it also opens while it
   * cannot be (the uploader then retries until it answers).
   */
  static async open(config: BackupConfig, stateDir: string): Promise<Backups> {
    const key = await loadUserKey(config.userKeyPath);
    const store = new MirroredStore({
      location: config.dataRepo,
      // Unreachable is the mirror's and the uploader's business; busy is retried here.
      open: () =>
        openStore(config.dataRepo, {
          signingKey: key.signingKey,
          retry: { onlyAnswered: true },
        }),
      mirrorDir: `${stateDir}/mirror-data`,
    });
    let data: DataRepository;
    try {
      data = await DataRepository.open(store, key, { create: true });
    } catch (err) {
      await store.close();
      if (!isRetryable(err)) throw err;
      throw new TransientError(
        `the data repository ${config.dataRepo} cannot be reached to set backups up ` +
          `(${(err as Error).message}); connect, or start vat without --data-repo`,
        { cause: err },
      );
    }
    const vatId = await _vatId(stateDir);
    const cache = await ChunkCache.open({
      dir: `${stateDir}/user-cache`,
      budgetBytes: config.cacheBytes ?? 2 * 1024 ** 3,
      hashOf: (chunk) => data.root.codec.nameOf(chunk),
    });
    const backups = new Backups(config, stateDir, key, data, cache, vatId);
    backups.#renewTimer = setInterval(
      () => backups.#renewLeases(),
      (config.leaseTtlMs ?? LEASE_TTL_MS) / 3,
    );
    Deno.unrefTimer(backups.#renewTimer);
    return backups;
  }

  /** Where the data repository is, for messages. */
  get location(): string {
    return this.config.dataRepo;
  }

  /** The backup of appliance `name` (its outbox under `dir`). */
  subscription(name: string, dir: string): Promise<SubscriptionBackup> {
    let opened = this.#subscriptions.get(name);
    if (!opened) {
      opened = SubscriptionBackup.open({
        data: this.#data,
        dir,
        name,
        vatId: this.vatId,
        limiter: this.limiter,
        schedule: (task) => this.schedule(task),
        leaseTtlMs: this.config.leaseTtlMs ?? LEASE_TTL_MS,
      });
      opened.catch(() => this.#subscriptions.delete(name));
      this.#subscriptions.set(name, opened);
    }
    return opened;
  }

  /** Forgets appliance `name`'s backup (the appliance was deleted). */
  async forget(name: string): Promise<void> {
    const opened = this.#subscriptions.get(name);
    this.#subscriptions.delete(name);
    (await opened?.catch(() => null))?.close();
  }

  /** Uploads what waits, now and then again until every outbox is empty. */
  kick(): void {
    if (this.#closed) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#pass = this.#pass.then(() => this.#uploadPass());
  }

  /** Stops the uploader (queued snapshots stay for the next start). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    clearInterval(this.#renewTimer);
    for (const opened of this.#subscriptions.values()) {
      (await opened.catch(() => null))?.stopUploading();
    }
    await this.#pass.catch(() => {});
    for (const opened of this.#subscriptions.values()) (await opened.catch(() => null))?.close();
    await this.cache.close();
    await this.#data.close();
  }

  /** Keeps the leases this VAT holds alive (a lost one is noticed by the next upload). */
  async #renewLeases(): Promise<void> {
    for (const opened of this.#subscriptions.values()) {
      const backup = await opened.catch(() => null);
      await backup?.renewLease().catch(() => {}); // offline: tried again next time
    }
  }

  async #uploadPass(): Promise<void> {
    const retry = await this.#uploadEach();
    if (retry && !this.#closed) {
      this.#timer = setTimeout(() => this.kick(), RETRY_MS);
      Deno.unrefTimer(this.#timer);
    }
  }

  /** One upload round over every subscription; true when one should be tried again. */
  async #uploadEach(): Promise<boolean> {
    let retry = false;
    for (const opened of this.#subscriptions.values()) {
      const backup = await opened.catch(() => null);
      if (!backup || backup.outbox.queuedCount() === 0) continue;
      // The status shows the upload's progress: say twice a second that it changed.
      this.dispatchEvent(new Event("change"));
      const ticker = setInterval(() => this.dispatchEvent(new Event("change")), PROGRESS_EVENT_MS);
      try {
        await backup.upload();
        if (!backup.active) await backup.releaseIfIdle();
      } catch (err) {
        retry = true;
        if (!isRetryable(err)) console.error(`backup ${backup.name}: ${(err as Error).message}`);
      } finally {
        clearInterval(ticker);
      }
      this.dispatchEvent(new Event("change"));
    }
    return retry;
  }
}

/** This VAT's id, made once per state directory. */
async function _vatId(stateDir: string): Promise<string> {
  const path = `${stateDir}/vat-id`;
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const id = randomUUID();
  await writeFileAtomic(path, new TextEncoder().encode(id + "\n"));
  return id;
}
