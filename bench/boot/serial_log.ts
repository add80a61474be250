/**
 * `waitForSerialLine()`: when a guest printed a line on its serial console, read from
 * the file QEMU logs the console to. The file is polled (every 10 ms by default), so
 * a time it reports is at most one poll interval late.
 *
 * @module
 */

/** What `waitForSerialLine()` looks for, and for how long. */
export interface SerialWaitOptions {
  /** Only bytes from here on count (a log that is appended across boots). Default 0. */
  fromByte?: number;
  timeoutMs: number;
  pollMs?: number;
  /** Called every poll; a string it returns is the reason to give up (e.g. QEMU died). */
  failed?: () => string | undefined;
  /** Called every poll, for callers that watch other files meanwhile. */
  onPoll?: () => Promise<void>;
}

/** The log's size in bytes, 0 if it does not exist yet. */
export async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return 0;
    throw err;
  }
}

/**
 * Resolves with `performance.now()` at the first poll that finds `marker` at the start
 * of a line in `path` after `fromByte`. Throws with the log's tail on a timeout or
 * when `failed()` gives a reason.
 */
export async function waitForSerialLine(
  path: string,
  marker: string,
  options: SerialWaitOptions,
): Promise<number> {
  const started = performance.now();
  const pollMs = options.pollMs ?? 10;
  const pattern = new RegExp(`(^|\\n)${marker}\\r?\\n`);
  let text = "";
  for (;;) {
    await options.onPoll?.();
    text = await _readFrom(path, options.fromByte ?? 0);
    if (pattern.test(text)) return performance.now();
    const reason = options.failed?.();
    const waited = performance.now() - started;
    if (reason !== undefined || waited > options.timeoutMs) {
      throw new Error(
        `no ${marker} on the serial console (${path}) ` +
          `${reason ?? `after ${(waited / 1000).toFixed(0)} s`}; it ends:\n${text.slice(-1500)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

async function _readFrom(path: string, fromByte: number): Promise<string> {
  try {
    // Console logs are a few KiB: reading the whole file is simpler than seeking.
    return new TextDecoder().decode((await Deno.readFile(path)).subarray(fromByte));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return "";
    throw err;
  }
}
