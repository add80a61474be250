/**
 * The updater (docs/UPDATE.md): checks the release repository pinned on this VAT,
 * fetches its newest release through the chunk cache at the scheduler's background
 * level, writes it into the free slot of the install directory and stages it for the
 * launcher. Only chunks that neither the installed slots nor the cache hold cross the
 * link, so an update costs what changed: the delta needs no precomputed pair.
 *
 * What it refuses, with a message that says so: a repository that is not a release
 * repository, a manifest not signed by the pinned key (whatever the repository's
 * `repo.json` lists), a release of an older vat than the one running (a rollback), one
 * whose `minFrom` is newer than the running vat, and the release that last failed to
 * prove itself here. Every byte is checked twice: each chunk against its hash as it
 * arrives (the index is pinned by the signed manifest), and each file as written,
 * read back after its fsync.
 *
 * @module
 */

import type { ChunkCache } from "../cache/chunk_cache.ts";
import { IntegrityError, PermanentError, TransientError, UsageError } from "../errors.ts";
import { syncDir, writeFileAtomic } from "../fs_atomic.ts";
import { fetchPath } from "../fetch/fetch_path.ts";
import type { FetchScheduler } from "../fetch/fetch_scheduler.ts";
import { toHex } from "../repo/chunk_codec.ts";
import type { DiskIndex } from "../repo/disk_index.ts";
import { checkFreshness, type Vouched } from "../repo/freshness.ts";
import type { ObjectRef, VersionManifest } from "../repo/manifest.ts";
import { openStore } from "../repo/open_store.ts";
import { Repository } from "../repo/repository.ts";
import type { Store } from "../repo/store.ts";
import { type InstallDir, type InstallState, type Slot, SLOTS } from "./install_dir.ts";
import { compareVatVersions } from "./vat_version.ts";
import {
  INDEX_DIR,
  localChunks,
  readLocalChunk,
  verifySlotFile,
  writeSlotFile,
} from "./slot_files.ts";

/** How the updater is set up. */
export interface UpdaterOptions {
  /** The release repository (a directory, http(s):// or s3:// location). */
  repo: string;
  /** The publisher key pinned on this VAT: the only key a release may be signed by. */
  key: string;
  installDir: InstallDir;
  cache: ChunkCache;
  /** Chunk fetches run at its `prefetch` level, behind guests' reads and trace replay. */
  scheduler?: FetchScheduler;
  /** The vat version running now (`vat/cli/version.ts`). */
  runningVersion: string;
  /** The slot this process was started from by the launcher, if any. */
  runningSlot?: Slot | null;
  /** Opens the repository's store (default: `openStore`). */
  openStore?: (location: string) => Promise<Store>;
  log?: (line: string) => void;
}

/** The newest release the last check found, and whether this VAT would install it. */
export interface AvailableRelease {
  release: number;
  vatVersion: string;
  kind: "bundle" | "binary";
  createdAt: string;
  note?: string;
  sizeBytes: number;
  /** Whether `apply` would install it. */
  installable: boolean;
  /** Why (not): "newer than installed release 3", "release 4 is installed", ... */
  reason: string;
  /**
   * What the publisher's freshness statements say is wrong (docs/SECURITY.md, "Freeze"):
   * the repository withholds a release its publisher vouched for, or has not vouched for
   * its newest release lately (a frozen copy); null when neither.
   */
  freshness: string | null;
}

/** How far a download is. */
export interface UpdateProgress {
  release: number;
  slot: Slot;
  /** Fetching what is missing into the cache, then writing the slot's files. */
  phase: "fetching" | "writing" | "staged";
  /** Plain bytes of the chunks this download must fetch (not local, not cached). */
  toFetchBytes: number;
  /** Bytes of the release's files written so far, of `totalBytes`. */
  doneBytes: number;
  totalBytes: number;
  /** Plain bytes fetched from the repository, and the stored (compressed) bytes that crossed the link. */
  fetchedBytes: number;
  fetchedStoredBytes: number;
  /** Bytes copied from the installed slots' files (chunks an earlier release left). */
  localBytes: number;
  /** Bytes found in the chunk cache (fetched by an earlier, interrupted download). */
  cachedBytes: number;
  /** All-zero chunks, written without fetching. */
  zeroBytes: number;
  /** Disk index objects fetched (those of files that changed). */
  indexBytes: number;
}

/** What `apply` did. */
export interface ApplyResult {
  installed: boolean;
  reason: string;
  release: number | null;
  vatVersion: string | null;
  slot: Slot | null;
  progress: UpdateProgress | null;
  elapsedMs: number;
}

/** What the API and `vat update status` show. */
export interface UpdateStatus {
  repo: string;
  key: string;
  runningVersion: string;
  runningSlot: Slot | null;
  state: "idle" | "checking" | "downloading" | "error";
  install: InstallState;
  available: AvailableRelease | null;
  progress: UpdateProgress | null;
  lastCheckAt: string | null;
  lastError: string | null;
  lastApply: ApplyResult | null;
}

/** Updates this VAT from its release repository. */
export class Updater {
  readonly #options: UpdaterOptions;
  #state: UpdateStatus["state"] = "idle";
  #available: AvailableRelease | null = null;
  #progress: UpdateProgress | null = null;
  #lastCheckAt: string | null = null;
  #lastError: string | null = null;
  #lastApply: ApplyResult | null = null;
  #busy: Promise<unknown> = Promise.resolve();
  #closed = false;
  /** Called after a release was staged (the daemon restarts into it when idle). */
  onStaged?: (result: ApplyResult) => void;

  constructor(options: UpdaterOptions) {
    this.#options = options;
  }

  /** The updater's state, the slots' and the last check's. */
  async status(): Promise<UpdateStatus> {
    return {
      repo: this.#options.repo,
      key: this.#options.key,
      runningVersion: this.#options.runningVersion,
      runningSlot: this.#options.runningSlot ?? null,
      state: this.#state,
      install: await this.#options.installDir.read(),
      available: this.#available,
      progress: this.#progress ? { ...this.#progress } : null,
      lastCheckAt: this.#lastCheckAt,
      lastError: this.#lastError,
      lastApply: this.#lastApply,
    };
  }

  /** Reads the newest release and says whether it would be installed; throws on a refusal. */
  check(): Promise<AvailableRelease> {
    return this.#serial(async () => {
      const repo = await this.#openRepository();
      try {
        return (await this.#checkNewest(repo)).available;
      } finally {
        await repo.store.close();
      }
    });
  }

  /** Checks, and downloads, verifies and stages the newest release if it is installable. */
  apply(): Promise<ApplyResult> {
    return this.#serial(async () => {
      const started = performance.now();
      const repo = await this.#openRepository();
      try {
        const { available, manifest } = await this.#checkNewest(repo);
        if (!available.installable) {
          return this.#lastApply = {
            installed: false,
            reason: available.reason,
            release: available.release,
            vatVersion: available.vatVersion,
            slot: null,
            progress: null,
            elapsedMs: performance.now() - started,
          };
        }
        this.#state = "downloading";
        const result = await this.#options.installDir.locked(() =>
          this.#install(repo, available, manifest, started)
        );
        this.#lastApply = result;
        this.#state = "idle";
        this.onStaged?.(result);
        return result;
      } finally {
        await repo.store.close();
      }
    });
  }

  /**
   * Stops: a download under way ends at its next chunk (its chunks stay cached and
   * pinned, so the next apply resumes it); resolves when it has.
   */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#busy.catch(() => {});
  }

  /** Runs one check or apply at a time, recording its error in the status. */
  #throwIfClosed(): void {
    if (this.#closed) throw new TransientError("the update stopped because vat is stopping");
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#busy.catch(() => {}).then(async () => {
      this.#throwIfClosed();
      this.#state = "checking";
      try {
        const result = await fn();
        this.#lastError = null;
        return result;
      } catch (err) {
        this.#lastError = (err as Error).message;
        throw err;
      } finally {
        this.#state = this.#lastError ? "error" : "idle";
        this.#lastCheckAt = new Date().toISOString();
      }
    });
    this.#busy = run;
    return run;
  }

  async #openRepository(): Promise<Repository> {
    const store = await (this.#options.openStore ?? openStore)(this.#options.repo);
    try {
      // The pinned key is the VAT's own policy: the repository's key lists are not read.
      const repo = await Repository.open(store, undefined, { keyLists: false });
      if (repo.config.kind !== "release") {
        throw new UsageError(
          `${store.location} is a repository of kind ${repo.config.kind}, not a release repository`,
        );
      }
      // Only the pinned key counts, whatever repo.json lists: whoever can write the
      // repository cannot add a key of their own (docs/UPDATE.md, "What is verified").
      repo.policy = { keys: [this.#options.key] };
      return repo;
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  async #checkNewest(
    repo: Repository,
  ): Promise<{ available: AvailableRelease; manifest: VersionManifest }> {
    const latest = await repo.latestVersion();
    if (latest === null) {
      throw new PermanentError(`${repo.store.location} holds no release yet`);
    }
    let manifest: VersionManifest;
    try {
      manifest = (await repo.readVersion(latest)).manifest;
    } catch (err) {
      if (!(err instanceof IntegrityError)) throw err;
      throw new IntegrityError(
        `release ${latest} of ${repo.store.location} is refused: it is not signed by the pinned ` +
          `release key ${this.#options.key} (${err.message})`,
        { cause: err },
      );
    }
    const record = manifest.release;
    if (!record) {
      throw new IntegrityError(
        `release ${latest} of ${repo.store.location} is refused: its manifest has no release record`,
      );
    }
    const running = this.#options.runningVersion;
    if (compareVatVersions(record.vatVersion, running) < 0) {
      throw new PermanentError(
        `release ${latest} of ${repo.store.location} is refused: it is vat ${record.vatVersion}, ` +
          `older than the running vat ${running} (vat never rolls back)`,
      );
    }
    if (record.minFrom && compareVatVersions(running, record.minFrom) < 0) {
      throw new PermanentError(
        `release ${latest} (vat ${record.vatVersion}) needs vat ${record.minFrom} or newer to ` +
          `update from; this is vat ${running}: install an intermediate release first`,
      );
    }
    const install = await this.#options.installDir.read();
    const installed = Math.max(
      install.current?.release?.release ?? 0,
      install.next?.release?.release ?? 0,
    );
    let installable = true;
    let reason = installed ? `newer than installed release ${installed}` : "nothing is installed";
    if (install.failed === latest) {
      installable = false;
      reason = `release ${latest} failed to start on this VAT; waiting for a newer one`;
    } else if (latest <= installed) {
      installable = false;
      reason = install.next?.release?.release === latest
        ? `release ${latest} is staged in slot ${install.next.slot}; it starts when vat restarts`
        : `release ${latest} is installed (up to date)`;
    }
    const sizeBytes = Object.keys(record.files)
      .reduce((sum, disk) => sum + manifest.disks[disk].sizeBytes, 0);
    const freshness = await this.#freshness(repo, latest);
    if (freshness) this.#options.log?.(`update: ${freshness}`);
    this.#available = {
      release: latest,
      vatVersion: record.vatVersion,
      kind: record.kind,
      createdAt: manifest.createdAt,
      note: manifest.note,
      sizeBytes,
      installable,
      reason,
      freshness,
    };
    return { available: this.#available, manifest };
  }

  /**
   * Judges the release repository's freshness (`freshnessProblem`) by the newest
   * statement signed by the pinned key that this VAT has seen, kept in the install
   * directory (`vouched.json`) so a replayed older statement changes nothing.
   */
  async #freshness(repo: Repository, offered: number): Promise<string | null> {
    const kept = `${this.#options.installDir.dir}/vouched.json`;
    return await checkFreshness(
      repo,
      { repoId: repo.config.id, trustedKeys: [this.#options.key] },
      offered,
      {
        load: () => Deno.readTextFile(kept).then((text) => JSON.parse(text) as Vouched, () => null),
        save: async (vouched) => {
          await Deno.mkdir(this.#options.installDir.dir, { recursive: true });
          await writeFileAtomic(kept, new TextEncoder().encode(JSON.stringify(vouched) + "\n"));
        },
      },
    );
  }

  async #install(
    repo: Repository,
    available: AvailableRelease,
    manifest: VersionManifest,
    started: number,
  ): Promise<ApplyResult> {
    const { installDir, cache, scheduler, log } = this.#options;
    const record = manifest.release!;
    const slot = await installDir.freeSlot(this.#options.runningSlot ?? null);
    const local = await localChunks(installDir, slot, repo.config.chunkSizeBytes);
    const progress: UpdateProgress = {
      release: available.release,
      slot,
      phase: "fetching",
      toFetchBytes: 0,
      doneBytes: 0,
      totalBytes: available.sizeBytes,
      fetchedBytes: 0,
      fetchedStoredBytes: 0,
      localBytes: 0,
      cachedBytes: 0,
      zeroBytes: 0,
      indexBytes: 0,
    };
    this.#progress = progress;
    // A file that did not change has the index it had: kept in the slots, not fetched.
    const indexes = new Map<string, DiskIndex>();
    const indexObjects = new Map<string, Uint8Array>();
    for (const disk of Object.keys(record.files)) {
      const ref = manifest.disks[disk].index;
      let object = await _keptIndex(installDir, slot, ref.sha256);
      let index = object ? _tryDecode(repo, ref, object) : null;
      if (!object || !index) {
        object = await repo.store.get(ref.key);
        progress.indexBytes += object.length;
        index = repo.decodeDiskIndex(ref, object);
      }
      indexes.set(disk, index);
      indexObjects.set(ref.sha256, object);
    }
    log?.(
      `update: installing release ${available.release} (vat ${record.vatVersion}) into slot ${slot}`,
    );
    // Chunks to fetch are pinned until the slot is complete, so a download that is
    // interrupted (a crash, a lost link) finds them in the cache when it resumes.
    // Chunks to fetch are pinned until the slot is complete, so a download that is
    // interrupted (a crash, a lost link) finds them in the cache when it resumes.
    const owner = `release:${repo.config.id}@${available.release}`;
    const remote = new Map<string, { hash: Uint8Array; length: number }>();
    for (const index of indexes.values()) {
      for (const [i, hash] of index.dataChunks()) {
        const id = toHex(hash);
        if (!local.has(id)) remote.set(id, { hash, length: index.chunkLength(i) });
      }
    }
    cache.pin(owner, [...remote.values()].map((c) => c.hash));
    // At the prefetcher's level: a running guest's demand reads go first.
    const source = fetchPath({
      cache,
      scheduler,
      priority: "prefetch",
      transport: async (hash) => {
        const { plain, storedBytes } = await repo.readStoredChunk(hash);
        progress.fetchedBytes += plain.length;
        progress.fetchedStoredBytes += storedBytes;
        return plain;
      },
    });
    // First into the cache, several at a time (the scheduler bounds what is on the link).
    const missing: Uint8Array[] = [];
    for (const { hash, length } of remote.values()) {
      if (cache.has(hash)) progress.cachedBytes += length;
      else {
        missing.push(hash);
        progress.toFetchBytes += length;
      }
    }
    let next = 0;
    const worker = async () => {
      while (next < missing.length) {
        this.#throwIfClosed();
        await source.load(missing[next++]);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    // Then into the slot: each chunk from the installed slots, the cache, or zeroes.
    progress.phase = "writing";
    const path = await installDir.clearSlot(slot);
    for (const [disk, file] of Object.entries(record.files)) {
      const index = indexes.get(disk)!;
      const target = `${path}/${file.path}`;
      await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), { recursive: true });
      await writeSlotFile(`${target}.part`, index, async (i, hash) => {
        this.#throwIfClosed();
        const length = index.chunkLength(i);
        progress.doneBytes += length;
        if (!hash) {
          progress.zeroBytes += length;
          return null;
        }
        const mine = await readLocalChunk(local.get(toHex(hash)), hash);
        if (mine) {
          progress.localBytes += length;
          return mine;
        }
        return await source.get(hash);
      });
      await verifySlotFile(`${target}.part`, index, file.path);
      await Deno.chmod(`${target}.part`, file.mode);
      await Deno.rename(`${target}.part`, target);
      await syncDir(target.slice(0, target.lastIndexOf("/")));
    }
    await Deno.mkdir(`${path}/${INDEX_DIR}`);
    for (const [sha256, object] of indexObjects) {
      await writeFileAtomic(`${path}/${INDEX_DIR}/${sha256}`, object);
    }
    await installDir.sealSlot(slot, {
      release: available.release,
      vatVersion: record.vatVersion,
      kind: record.kind,
      repoId: repo.config.id,
      installedAt: new Date().toISOString(),
      ...(manifest.note ? { note: manifest.note } : {}),
    });
    await installDir.stage(slot);
    progress.phase = "staged";
    for (const stale of cache.pinOwners(`release:${repo.config.id}@`)) cache.unpin(stale);
    log?.(
      `update: release ${available.release} staged in slot ${slot}: fetched ` +
        `${progress.fetchedStoredBytes} bytes (${progress.fetchedBytes} plain) of ` +
        `${progress.totalBytes}; ${progress.localBytes} from the installed slots`,
    );
    return {
      installed: true,
      reason: `release ${available.release} (vat ${record.vatVersion}) is staged in slot ${slot}`,
      release: available.release,
      vatVersion: record.vatVersion,
      slot,
      progress: { ...progress },
      elapsedMs: performance.now() - started,
    };
  }
}

/** Where a slot keeps its files' disk index objects, by their SHA-256. */

/** A disk index object kept by a complete slot other than `exclude`, or null. */
async function _keptIndex(
  installDir: InstallDir,
  exclude: Slot,
  sha256: string,
): Promise<Uint8Array | null> {
  for (const slot of SLOTS) {
    if (slot === exclude || !(await installDir.slotRelease(slot))) continue;
    try {
      return await Deno.readFile(`${installDir.slotPath(slot)}/${INDEX_DIR}/${sha256}`);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  return null;
}

/** A kept index that does not check out is fetched instead. */
function _tryDecode(repo: Repository, ref: ObjectRef, object: Uint8Array): DiskIndex | null {
  try {
    return repo.decodeDiskIndex(ref, object);
  } catch (err) {
    if (err instanceof IntegrityError) return null;
    throw err;
  }
}
