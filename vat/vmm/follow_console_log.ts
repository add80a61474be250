/**
 * `followConsoleLog`: a serial console's log file (`console.log` of a run directory,
 * which QEMU appends to) as it grows, for the UI's live log. The log is polled: it
 * is a plain file that QEMU writes, sometimes before it exists, and a new run or a
 * deleted appliance may replace it.
 *
 * @module
 */

/** A piece of the log. */
export interface ConsoleLogChunk {
  /** The text replaces everything sent before (the first chunk, or a new log file). */
  reset: boolean;
  text: string;
}

/** Options of `followConsoleLog`. */
export interface FollowConsoleLogOptions {
  /** Ends the following (the generator returns). */
  signal?: AbortSignal;
  /** How much of an existing log the first chunk holds at most (default 64 KiB). */
  tailBytes?: number;
  /** How often to look for growth (default 250 ms). */
  intervalMs?: number;
}

/** The most read at once; a log that grew more is sent in several chunks. */
const _READ_LIMIT_BYTES = 1024 * 1024;

/**
 * Yields the end of the log at `path` (a reset chunk, empty when there is no log yet),
 * then every byte appended to it as text. A log that shrinks or is replaced by another
 * file starts over with a reset chunk holding the new file from its start. Ends when
 * `signal` aborts.
 */
export async function* followConsoleLog(
  path: string,
  options: FollowConsoleLogOptions = {},
): AsyncGenerator<ConsoleLogChunk> {
  const { signal, tailBytes = 64 * 1024, intervalMs = 250 } = options;
  let offset = 0;
  let inode: number | null = null;
  let decoder = new TextDecoder();
  let first = true;
  while (!signal?.aborted) {
    const file = await _stat(path);
    const size = file?.size ?? 0;
    const ino = file?.ino ?? null;
    let more = false;
    if (first || size < offset || (ino !== inode && inode !== null && ino !== null)) {
      // The first look, or a new log: start over.
      // A tail starts at a line's start: one byte earlier, to see whether a line ends there.
      const start = first ? Math.max(0, size - tailBytes - 1) : 0;
      const end = Math.min(size, start + _READ_LIMIT_BYTES);
      decoder = new TextDecoder();
      const bytes = await _read(path, start, end);
      let text = decoder.decode(bytes, { stream: true });
      if (start > 0) text = text.slice(text.indexOf("\n") + 1);
      offset = start + bytes.length;
      more = end < size;
      first = false;
      yield { reset: true, text };
    } else if (size > offset) {
      const end = Math.min(size, offset + _READ_LIMIT_BYTES);
      const bytes = await _read(path, offset, end);
      const text = decoder.decode(bytes, { stream: true });
      offset += bytes.length;
      more = end < size;
      if (text !== "") yield { reset: false, text };
    }
    if (ino !== null) inode = ino;
    if (!more) await _sleep(intervalMs, signal);
  }
}

async function _stat(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/** Bytes `start` to `end` of the file; fewer when it was cut short meanwhile. */
async function _read(path: string, start: number, end: number): Promise<Uint8Array> {
  const out = new Uint8Array(end - start);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (err) {
    // Removed since the stat (the appliance was deleted): nothing to read.
    if (err instanceof Deno.errors.NotFound) return out.subarray(0, 0);
    throw err;
  }
  try {
    await file.seek(start, Deno.SeekMode.Start);
    let filled = 0;
    while (filled < out.length) {
      const n = await file.read(out.subarray(filled));
      if (n === null) break;
      filled += n;
    }
    return out.subarray(0, filled);
  } finally {
    file.close();
  }
}

function _sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}
