/**
 * `spawnQemu()`: starts a `qemu-system-x86_64` child that dies with the VAT, and
 * keeps the tail of what it prints, for error messages.
 *
 * @module
 */

import { NotFoundError, VatError } from "../errors.ts";

/** The QEMU binary vat runs unless told otherwise. */
export const QEMU_BINARY = "qemu-system-x86_64";

/** How much of QEMU's stderr and stdout is kept for error messages. */
const _TAIL_CHARS = 4000;

/** setpriv (util-linux) sets the parent-death signal, then execs QEMU in its place. */
const _SETPRIV = "/usr/bin/setpriv";

/** QEMU failed: would not start, exited unexpectedly, or refused an operation. */
export class QemuError extends VatError {
  /** The last lines QEMU printed on stderr/stdout, if any. */
  readonly output: string;

  constructor(message: string, output = "", options?: { cause?: unknown }) {
    super(output ? `${message}; QEMU said:\n${output}` : message, options);
    this.output = output;
  }
}

/** A running QEMU child. */
export interface QemuProcess {
  readonly pid: number;
  /** Resolves when the process has exited (never rejects). */
  readonly status: Promise<Deno.CommandStatus>;
  /** Whether the process has exited. */
  readonly hasExited: boolean;
  /** The last few thousand characters QEMU printed (stderr and stdout). */
  outputTail(): string;
  /** Sends a signal; does nothing if the process is already gone. */
  kill(signal: Deno.Signal): void;
}

/**
 * Spawns `binary args...` with stdin closed and its output collected.
 *
 * The child gets SIGKILL when the thread that spawned it ends (Linux's parent-death
 * signal, set by `setpriv --pdeathsig` before it execs QEMU, so the pid is QEMU's):
 * a VAT killed with SIGKILL leaves no QEMU behind. Deno spawns on the JavaScript
 * thread, so for the VAT that is its main thread; a QEMU started from a Worker dies
 * with the Worker. Without setpriv the child is spawned directly and an orphan is
 * possible; `reapOrphan()` finds it by its pid file.
 *
 * Throws `NotFoundError` if QEMU is not installed.
 */
export function spawnQemu(binary: string, args: string[]): QemuProcess {
  const withSetpriv = _hasSetpriv();
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(withSetpriv ? _SETPRIV : binary, {
      args: withSetpriv ? ["--pdeathsig", "KILL", "--", binary, ...args] : args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw qemuNotInstalled(binary, err);
    throw err;
  }
  let tail = "";
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    try {
      for await (const piece of stream) {
        tail = (tail + decoder.decode(piece, { stream: true })).slice(-_TAIL_CHARS);
      }
    } catch {
      // The pipe broke: the process is gone, and its status says how.
    }
  };
  const collecting = Promise.all([collect(child.stderr), collect(child.stdout)]);
  let exited = false;
  const status = child.status.then(async (s) => {
    exited = true;
    // The pipes close when the process exits; read what is left in them.
    await collecting;
    return s;
  });
  return {
    pid: child.pid,
    status,
    get hasExited() {
      return exited;
    },
    outputTail: () => tail.trim(),
    kill(signal: Deno.Signal) {
      if (exited) return;
      try {
        child.kill(signal);
      } catch (err) {
        // The process exited between the check and the kill.
        if (!(err instanceof TypeError || err instanceof Deno.errors.NotFound)) throw err;
      }
    },
  };
}

/**
 * Whether a QEMU that exited with `status` and printed `output` was not installed:
 * through setpriv, a missing binary is setpriv's failure to exec, not a spawn error.
 */
export function isMissingBinary(status: Deno.CommandStatus, output: string): boolean {
  return !status.success && /setpriv: failed to execute .*No such file/i.test(output);
}

/** The error for a QEMU binary that is not installed. */
export function qemuNotInstalled(binary: string, cause?: unknown): NotFoundError {
  return new NotFoundError(
    `${binary} is not installed (install it: apt-get install qemu-system-x86)`,
    { cause },
  );
}

let _setpriv: boolean | undefined;

function _hasSetpriv(): boolean {
  if (_setpriv === undefined) {
    try {
      _setpriv = Deno.statSync(_SETPRIV).isFile;
    } catch {
      _setpriv = false;
    }
  }
  return _setpriv;
}
