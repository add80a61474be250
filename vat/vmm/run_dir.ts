/**
 * A VM's run directory: the files of one running QEMU (its sockets, pid file and
 * console log), and `reapOrphan()`, which ends a QEMU left behind by a VAT that was
 * killed.
 *
 * The directory is the VAT's user's alone (mode 0700), and so are the sockets in it
 * (0600): whoever can connect to QMP, the serial console or VNC controls the guest, and
 * none of them asks for a password.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/** Where the files of the VM in a run directory live. */
export interface RunDirPaths {
  dir: string;
  /** QMP, QEMU's control socket. */
  qmpSocket: string;
  /** The serial console's chardev socket. */
  consoleSocket: string;
  /** Plain VNC (RFB, no authentication): the screen, relayed only by the VAT. */
  vncSocket: string;
  /** QEMU's pid file: how `reapOrphan()` finds a QEMU whose VAT died. */
  pidFile: string;
  /** Everything the guest printed on its serial console, appended across runs. */
  consoleLog: string;
}

/** A Unix socket path longer than this does not fit in `sockaddr_un`. */
const _MAX_SOCKET_PATH = 107;

/** How long `reapOrphan()` waits for a killed QEMU to disappear. */
const _REAP_WAIT_MS = 5000;

/** The paths of the run directory `dir`. Throws `UsageError` if the sockets' paths are too long. */
export function runDirPaths(dir: string): RunDirPaths {
  const base = dir.replace(/\/+$/, "");
  const paths: RunDirPaths = {
    dir: base,
    qmpSocket: `${base}/qmp.sock`,
    consoleSocket: `${base}/console.sock`,
    vncSocket: `${base}/vnc.sock`,
    pidFile: `${base}/qemu.pid`,
    consoleLog: `${base}/console.log`,
  };
  const longest = paths.consoleSocket;
  if (new TextEncoder().encode(longest).length > _MAX_SOCKET_PATH) {
    throw new UsageError(
      `run directory ${dir} is too long for Unix socket paths (at most ${
        _MAX_SOCKET_PATH - "/console.sock".length
      } bytes); choose a shorter one`,
    );
  }
  return paths;
}

/**
 * Creates run directory `dir` (and missing parents) if needed and makes it mode 0700.
 * Throws `UsageError` if `dir` is not a directory of the VAT's own user (a symlink, or
 * one someone else made), which would let another user reach QEMU's sockets.
 */
export async function makeRunDir(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await Deno.lstat(dir);
  if (!info.isDirectory) {
    throw new UsageError(`run directory ${dir} is not a directory (a symlink?); remove it`);
  }
  const uid = Deno.uid();
  if (uid !== null && info.uid !== uid) {
    throw new UsageError(
      `run directory ${dir} belongs to user ${info.uid}, not to this VAT's user ${uid}; remove it`,
    );
  }
  // mkdir's mode is reduced by the umask and does not touch a directory that exists.
  if ((info.mode! & 0o777) !== 0o700) await Deno.chmod(dir, 0o700);
}

/** Makes the QEMU sockets of a run directory that exist mode 0600. */
export async function restrictSockets(paths: RunDirPaths): Promise<void> {
  for (const path of [paths.qmpSocket, paths.consoleSocket, paths.vncSocket]) {
    try {
      await Deno.chmod(path, 0o600);
    } catch (err) {
      // No display, so no VNC socket.
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
}

/** Removes the sockets and the pid file of a run directory; keeps the console log. */
export async function removeRunFiles(paths: RunDirPaths): Promise<void> {
  for (const path of [paths.qmpSocket, paths.consoleSocket, paths.vncSocket, paths.pidFile]) {
    try {
      await Deno.remove(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
}

/**
 * Ends the QEMU that the pid file of run directory `dir` names, if it still runs, and
 * removes the directory's sockets and pid file. Resolves with the pid it killed, or
 * undefined if there was none.
 *
 * Normally QEMU dies with its VAT (see `spawnQemu()`), so this finds something only
 * where that safeguard is missing. Call it before starting a VM in `dir`, and only
 * while holding the run directory (the subscription's lock): the QEMU it finds is
 * assumed to be an orphan. A pid file whose process is not a QEMU of this directory
 * (the pid was reused) is ignored: that process's command line must name this
 * directory's QMP socket.
 */
export async function reapOrphan(dir: string): Promise<number | undefined> {
  const paths = runDirPaths(dir);
  let pid: number | undefined;
  try {
    const text = (await Deno.readTextFile(paths.pidFile)).trim();
    if (/^\d+$/.test(text)) pid = Number(text);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  let killed: number | undefined;
  if (pid !== undefined && await _isQemuOf(pid, paths)) {
    try {
      Deno.kill(pid, "SIGKILL");
      killed = pid;
    } catch (err) {
      // It exited between the check and the kill.
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    if (killed !== undefined) await _waitGone(pid);
  }
  await removeRunFiles(paths);
  return killed;
}

/** Whether process `pid` runs and is a QEMU using this run directory's QMP socket. */
async function _isQemuOf(pid: number, paths: RunDirPaths): Promise<boolean> {
  let cmdline: string;
  try {
    cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
  const args = cmdline.split("\0");
  // QEMU's option syntax doubles commas inside values.
  const option = `path=${paths.qmpSocket.replaceAll(",", ",,")}`;
  return args.some((arg) => arg.includes("qemu-system")) &&
    args.some((arg) => arg.endsWith(option) || arg.includes(`${option},`));
}

/** Waits until `pid` is gone or a zombie (its parent, if any, reaps it). */
async function _waitGone(pid: number): Promise<void> {
  const deadline = Date.now() + _REAP_WAIT_MS;
  while (Date.now() < deadline) {
    let stat: string;
    try {
      stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    // The state follows the parenthesised command name, which may itself hold ")".
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    if (state === "Z" || state === "X") return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
