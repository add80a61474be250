/**
 * Durable local file writes, restic's way: write a temporary file beside the target,
 * check the byte count, fsync, close, then rename over the target (or link, to create
 * only if absent); remove the temporary file on any error. A full disk is a
 * `PermanentError` that says so.
 *
 * @module
 */

import { PermanentError } from "./errors.ts";

/** Options for `writeFileAtomic`. */
export interface WriteOptions {
  /** File mode of the result (default 0o644). */
  mode?: number;
  /** Create only: fail with `false` instead of replacing an existing file. */
  exclusive?: boolean;
  /**
   * Called once every byte is written and synced, before the file is put in place:
   * throwing there abandons the write (a streamed body that turned out wrong).
   */
  beforeCommit?: () => void;
}

let tempCounter = 0;

/**
 * Writes `data` (bytes, or a stream of them written as they come) to `path` atomically
 * and durably. Returns false only with `exclusive` when `path` already existed (then
 * nothing was changed).
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | AsyncIterable<Uint8Array>,
  options: WriteOptions = {},
): Promise<boolean> {
  const dir = _dirOf(path);
  const temp = _tempPathFor(path);
  try {
    const file = await Deno.open(temp, {
      write: true,
      createNew: true,
      mode: options.mode ?? 0o644,
    });
    try {
      const parts = data instanceof Uint8Array ? [data] : data;
      for await (const part of parts) {
        let written = 0;
        while (written < part.length) written += await file.write(part.subarray(written));
      }
      await file.sync();
    } finally {
      file.close();
    }
    options.beforeCommit?.();
    if (options.exclusive) {
      try {
        await Deno.link(temp, path);
      } catch (err) {
        if (err instanceof Deno.errors.AlreadyExists) return false;
        throw err;
      } finally {
        await Deno.remove(temp).catch(() => {});
      }
    } else {
      await Deno.rename(temp, path);
    }
    await syncDir(dir);
    return true;
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    throw mapDiskFull(err, path);
  }
}

/**
 * Writes `data` to a new temporary file beside `path` (a dot file, which no store lists)
 * without syncing it, and returns the temporary file's path: the first half of a write
 * whose durability is batched (`commitTempFiles` is the second). On any error the
 * temporary file is removed.
 */
export async function writeTempFile(path: string, data: Uint8Array): Promise<string> {
  const temp = _tempPathFor(path);
  try {
    const file = await Deno.open(temp, { write: true, createNew: true, mode: 0o644 });
    try {
      let written = 0;
      while (written < data.length) written += await file.write(data.subarray(written));
    } finally {
      file.close();
    }
    return temp;
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    throw mapDiskFull(err, path);
  }
}

/**
 * Makes temporary files written by `writeTempFile` durable and puts them in place, as a
 * batch, with two `syncfs` calls instead of an fsync per file and directory: one syncs
 * every file's data (and everything else written to that filesystem), then each file is
 * renamed over its target, then the second makes the renames durable. When it resolves,
 * every target holds its complete data durably; a target is never visible before its
 * data is synced. All files must be on the filesystem of the first. On an error the
 * batch's remaining temporary files are removed and the error is thrown (targets
 * already renamed stay: complete).
 */
export async function commitTempFiles(files: { temp: string; path: string }[]): Promise<void> {
  if (files.length === 0) return;
  const dir = _dirOf(files[0].path);
  let renamed = 0;
  try {
    await syncFilesystem(dir);
    for (const { temp, path } of files) {
      await Deno.rename(temp, path);
      renamed++;
    }
    await syncFilesystem(dir);
  } catch (err) {
    for (const { temp } of files.slice(renamed)) await Deno.remove(temp).catch(() => {});
    throw mapDiskFull(err, files[0].path);
  }
}

/**
 * Makes every write to the filesystem holding `dir` durable: syncfs(2), through
 * coreutils' `sync -f` (Deno has no binding for it). Throws if it fails (since Linux
 * 5.8 syncfs reports writeback errors).
 */
export async function syncFilesystem(dir: string): Promise<void> {
  const { code, stderr } = await new Deno.Command("sync", { args: ["-f", dir], stderr: "piped" })
    .output();
  if (code !== 0) {
    throw new PermanentError(
      `cannot sync the filesystem of ${dir}: ${new TextDecoder().decode(stderr).trim()}`,
    );
  }
}

function _dirOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash >= 0 ? path.slice(0, slash) || "/" : ".";
}

function _tempPathFor(path: string): string {
  const base = path.slice(path.lastIndexOf("/") + 1);
  return `${_dirOf(path)}/.${base}.tmp-${Deno.pid}-${++tempCounter}-${
    Math.random().toString(36).slice(2)
  }`;
}

/**
 * Whether `err` (or an error in its `cause` chain) means the disk is full: the OS's
 * ENOSPC, EDQUOT or EFBIG, SQLite's SQLITE_FULL ("database or disk is full"), or a
 * `PermanentError` that already says so.
 */
export function isDiskFull(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof PermanentError && /disk full|disk of .* is full|no space/i.test(e.message)) {
      return true;
    }
    const { code, errcode } = e as { code?: unknown; errcode?: unknown };
    if (code === "ENOSPC" || code === "EDQUOT" || code === "EFBIG") return true;
    if (
      errcode === _SQLITE_FULL || /No space left on device|database or disk is full/.test(e.message)
    ) {
      return true;
    }
  }
  return false;
}

/** SQLite's primary result code for a full disk. */
const _SQLITE_FULL = 13;

/**
 * A full disk (see `isDiskFull`) as a `PermanentError` that names the disk by `path`
 * and says what to do, and so is a database file SQLite cannot open or write (a file
 * of another user's, a read-only one); any other error unchanged.
 */
export function mapDiskFull(err: unknown, path: string): unknown {
  if (_cannotOpen(err)) {
    return new PermanentError(
      `cannot open ${path}: ${(err as Error).message.replace(`: ${path}`, "")}; ` +
        "it and its directory must be writable by this user",
      { cause: err },
    );
  }
  if (!isDiskFull(err) || (err instanceof PermanentError && /is full/.test(err.message))) {
    return err;
  }
  return new PermanentError(
    `the disk of ${path} is full (no space left on the device); free some space on it and retry`,
    { cause: err },
  );
}

/** SQLite could not open or write its database file: a permission, not a bug. */
function _cannotOpen(err: unknown): boolean {
  // Deno's node:sqlite errors carry only the code and SQLite's message (no errcode).
  return (err as { code?: string })?.code === "ERR_SQLITE_ERROR" &&
    /unable to open database file|readonly database|access permission denied/.test(
      (err as Error).message,
    );
}

/** fsyncs a directory so a rename or link in it is durable. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await Deno.open(dir, { read: true });
  try {
    await handle.sync();
  } catch {
    // Some filesystems (and platforms) refuse fsync on a directory; the rename is
    // then as durable as that filesystem makes it.
  } finally {
    handle.close();
  }
}

/** Removes the file at `path` (a tree with `{ recursive: true }`); one that is not there is fine. */
export async function removeIfThere(path: string, options?: Deno.RemoveOptions): Promise<void> {
  await Deno.remove(path, options).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
}

/** Whether anything (a file, directory, socket or link) is at `path`. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
