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
}

let tempCounter = 0;

/**
 * Writes `data` to `path` atomically and durably. Returns false only with
 * `exclusive` when `path` already existed (then nothing was changed).
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array,
  options: WriteOptions = {},
): Promise<boolean> {
  const slash = path.lastIndexOf("/");
  const dir = slash >= 0 ? path.slice(0, slash) || "/" : ".";
  const base = path.slice(slash + 1);
  const temp = `${dir}/.${base}.tmp-${Deno.pid}-${++tempCounter}-${
    Math.random().toString(36).slice(2)
  }`;
  try {
    const file = await Deno.open(temp, {
      write: true,
      createNew: true,
      mode: options.mode ?? 0o644,
    });
    try {
      let written = 0;
      while (written < data.length) written += await file.write(data.subarray(written));
      await file.sync();
    } finally {
      file.close();
    }
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
 * and says what to do; any other error unchanged.
 */
export function mapDiskFull(err: unknown, path: string): unknown {
  if (!isDiskFull(err) || (err instanceof PermanentError && /is full/.test(err.message))) {
    return err;
  }
  return new PermanentError(
    `the disk of ${path} is full (no space left on the device); free some space on it and retry`,
    { cause: err },
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
