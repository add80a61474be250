/**
 * Unix socket paths left behind by a process that was killed: a socket file nobody
 * listens on is removed, one that answers is in use.
 *
 * @module
 */

import { UsageError } from "./errors.ts";

/**
 * Makes `path` free for a new listener: removes a stale socket file, refuses (with
 * `UsageError`) a live socket or any other kind of file.
 */
export async function removeStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  if (!info.isSocket) {
    throw new UsageError(`${path} exists and is not a socket; refusing to replace it`);
  }
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    throw new UsageError(`${path} is in use by another process`);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    // Nobody answers: the socket of a process that died.
    await Deno.remove(path);
  }
}
