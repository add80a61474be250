/**
 * The local directory transport: the embedded default, and any mounted filesystem
 * (NFS, a USB disk). Objects are files under the root; writes are atomic and durable
 * (`writeFileAtomic`); `create` links a complete temporary file into place, which fails
 * if the name exists, so a reader never sees a half-written object.
 *
 * Puts with `deferSync` (publish's chunks) write their temporary file without an fsync
 * and are committed in batches (`commitTempFiles`: syncfs, rename, syncfs), a batch
 * every `DEFERRED_BATCH` objects and the rest at the next `create`: a chunk file is under
 * its name only once its bytes are durable, as with a put of its own, without an fsync
 * per file and directory.
 *
 * @module
 */

import { NotFoundError, PermanentError } from "../errors.ts";
import { commitTempFiles, mapDiskFull, writeFileAtomic, writeTempFile } from "../fs_atomic.ts";
import {
  checkKey,
  checkPrefix,
  type ObjectInfo,
  type PutOptions,
  readLimit,
  type ReadOptions,
  type Store,
  tooLargeError,
} from "./store.ts";

/** Deferred puts committed together (at 64 KiB chunks, 16 MiB of a publish). */
export const DEFERRED_BATCH = 256;

/** A `Store` over a local directory. */
export class FileStore implements Store {
  readonly location: string;
  readonly canList = true;
  readonly #root: string;
  /** Deferred puts written but not yet committed. */
  #pending: { temp: string; path: string }[] = [];
  /** Batches being committed. */
  readonly #committing = new Set<Promise<void>>();
  /** The first failure of a batch since the last barrier: the next create throws it. */
  #batchFailure: unknown = null;
  /** Directories deferred puts have written to (so they exist). */
  readonly #knownDirs = new Set<string>();

  /** `root` must exist unless the caller creates it (see `FileStore.create`). */
  constructor(root: string) {
    this.#root = root.replace(/\/+$/, "") || "/";
    this.location = this.#root;
  }

  #path(key: string): string {
    return `${this.#root}/${checkKey(key)}`;
  }

  async get(key: string, options?: ReadOptions): Promise<Uint8Array> {
    const path = this.#path(key);
    const capBytes = readLimit(key, options);
    options?.signal?.throwIfAborted();
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (err) {
      throw _mapReadError(err, key, this.location);
    }
    try {
      const info = await file.stat();
      if (info.isDirectory) throw _mapReadError(new Deno.errors.IsADirectory(), key, this.location);
      if (info.size > capBytes) throw tooLargeError(key, this.location, capBytes, info.size);
      // The file may grow while it is read: read one byte past the limit to notice.
      let buffer = new Uint8Array(Math.min(info.size, capBytes) + 1);
      let filled = 0;
      for (;;) {
        options?.signal?.throwIfAborted();
        if (filled === buffer.length) {
          if (filled >= capBytes + 1) throw tooLargeError(key, this.location, capBytes);
          const grown = new Uint8Array(Math.min(Math.max(filled * 2, 4096), capBytes + 1));
          grown.set(buffer.subarray(0, filled));
          buffer = grown;
        }
        const n = await file.read(buffer.subarray(filled));
        if (n === null) break;
        filled += n;
      }
      if (filled > capBytes) throw tooLargeError(key, this.location, capBytes);
      return buffer.subarray(0, filled);
    } catch (err) {
      throw _mapReadError(err, key, this.location);
    } finally {
      file.close();
    }
  }

  async getRange(
    key: string,
    offset: number,
    length: number,
    options?: Pick<ReadOptions, "signal">,
  ): Promise<Uint8Array> {
    const path = this.#path(key);
    options?.signal?.throwIfAborted();
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (err) {
      throw _mapReadError(err, key, this.location);
    }
    try {
      await file.seek(offset, Deno.SeekMode.Start);
      const out = new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        const n = await file.read(out.subarray(filled));
        if (n === null) break;
        filled += n;
      }
      return filled === length ? out : out.subarray(0, filled);
    } finally {
      file.close();
    }
  }

  async put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    const path = this.#path(key);
    if (!options?.deferSync) {
      await this.#ensureParent(path);
      await writeFileAtomic(path, data);
      return;
    }
    if (this.#batchFailure) throw this.#batchFailure;
    this.#pending.push({ temp: await this.#writeTemp(path, data), path });
    // The put that fills a batch waits for its commit: the publisher's back-pressure.
    if (this.#pending.length >= DEFERRED_BATCH) await this.#commitPending();
  }

  /**
   * The durability barrier: commits every deferred put so far (and waits for batches
   * being committed); throws the first batch failure since the last barrier.
   */
  async barrier(): Promise<void> {
    if (this.#pending.length) this.#commitPending().catch(() => {});
    while (this.#committing.size) await Promise.allSettled([...this.#committing]);
    const failure = this.#batchFailure;
    this.#batchFailure = null;
    if (failure) throw failure;
  }

  #commitPending(): Promise<void> {
    const batch = this.#pending;
    this.#pending = [];
    const done = commitTempFiles(batch).catch((err) => {
      this.#batchFailure ??= err;
      throw err;
    }).finally(() => this.#committing.delete(done));
    this.#committing.add(done);
    return done;
  }

  async create(key: string, data: Uint8Array): Promise<boolean> {
    const path = this.#path(key);
    await this.barrier();
    await this.#ensureParent(path);
    if (await writeFileAtomic(path, data, { exclusive: true })) return true;
    // On NFS a link whose reply was lost reports EEXIST although it succeeded: the
    // object is then ours, byte for byte (a committed object carries a unique nonce).
    const existing = await Deno.readFile(path).catch(() => null);
    return existing !== null && Buffer.from(existing).equals(data);
  }

  /**
   * Writes an object from a stream without holding it in memory (vat serve's uploads):
   * `check` runs once it is all on disk, and throwing there leaves nothing behind.
   * `exclusive` creates only: returns false when the key exists (nothing written).
   */
  async putStream(
    key: string,
    parts: AsyncIterable<Uint8Array>,
    options: { exclusive?: boolean; check?: () => void } = {},
  ): Promise<boolean> {
    const path = this.#path(key);
    await this.#ensureParent(path);
    return await writeFileAtomic(path, parts, {
      exclusive: options.exclusive,
      beforeCommit: options.check,
    });
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    try {
      const info = await Deno.stat(this.#path(key));
      if (!info.isFile) return null;
      return { sizeBytes: info.size, modifiedMs: info.mtime?.getTime() ?? 0 };
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    checkPrefix(prefix);
    yield* this.#walk(prefix);
  }

  async *#walk(prefix: string): AsyncIterable<string> {
    let entries: AsyncIterable<Deno.DirEntry>;
    try {
      entries = Deno.readDir(`${this.#root}/${prefix}`);
      for await (const entry of entries) {
        // Temporary files of writes in progress start with "." and are not objects.
        if (entry.name.startsWith(".")) continue;
        if (entry.isDirectory) yield* this.#walk(`${prefix}${entry.name}/`);
        else if (entry.isFile) yield `${prefix}${entry.name}`;
      }
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
  }

  /**
   * Removes the temporary files (`.NAME.tmp-...`, `writeFileAtomic`'s) of writes that a
   * killed process left, once older than `olderThanMs`: a write in progress renames its
   * file within seconds, so an old one belongs to nobody.
   */
  async sweepTemporary(olderThanMs: number): Promise<number> {
    const before = Date.now() - olderThanMs;
    let removed = 0;
    const walk = async (dir: string): Promise<void> => {
      let entries: Deno.DirEntry[];
      try {
        entries = await Array.fromAsync(Deno.readDir(dir));
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) return;
        throw err;
      }
      for (const entry of entries) {
        const path = `${dir}/${entry.name}`;
        if (entry.isDirectory && !entry.name.startsWith(".")) await walk(path);
        else if (entry.isFile && _TEMPORARY.test(entry.name)) {
          const info = await Deno.stat(path).catch(() => null);
          if (!info || (info.mtime?.getTime() ?? Date.now()) >= before) continue;
          await Deno.remove(path).catch(() => {});
          removed++;
        }
      }
    };
    await walk(this.#root);
    return removed;
  }

  async delete(key: string): Promise<void> {
    try {
      await Deno.remove(this.#path(key));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
  }

  /** Waits for batches being committed and removes deferred puts never committed. */
  async close(): Promise<void> {
    while (this.#committing.size) await Promise.allSettled([...this.#committing]);
    const abandoned = this.#pending;
    this.#pending = [];
    for (const { temp } of abandoned) await Deno.remove(temp).catch(() => {});
  }

  /**
   * `writeTempFile` for a deferred put, making its directory only the first time this
   * store writes there (a publish puts thousands of chunks into 256 directories).
   */
  async #writeTemp(path: string, data: Uint8Array): Promise<string> {
    const dir = path.slice(0, path.lastIndexOf("/"));
    if (!this.#knownDirs.has(dir)) {
      await this.#ensureParent(path);
      this.#knownDirs.add(dir);
    }
    try {
      return await writeTempFile(path, data);
    } catch (err) {
      // vat never removes a directory of a repository, but its operator may: make it again.
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      await this.#ensureParent(path);
      return await writeTempFile(path, data);
    }
  }

  async #ensureParent(path: string): Promise<void> {
    const dir = path.slice(0, path.lastIndexOf("/"));
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (err) {
      if (err instanceof Deno.errors.PermissionDenied) {
        throw new PermanentError(`cannot write to ${dir}: permission denied`, { cause: err });
      }
      throw mapDiskFull(err, dir);
    }
  }
}

function _mapReadError(err: unknown, key: string, location: string): unknown {
  if (err instanceof Deno.errors.NotFound) {
    return new NotFoundError(`${key} does not exist in ${location}`, { cause: err });
  }
  if (err instanceof Deno.errors.IsADirectory) {
    return new NotFoundError(`${key} in ${location} is a directory, not an object`, {
      cause: err,
    });
  }
  return err;
}

/** The name `writeFileAtomic` gives a file while it is written. */
const _TEMPORARY = /^\..+\.tmp-\d+-/;
