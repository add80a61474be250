/**
 * `SerialConsole`: a running VM's serial port (the guest's ttyS0), reached through
 * the Unix socket of QEMU's socket chardev. vat reads everything the guest prints
 * (QEMU also copies it to a log file) and can type lines into it.
 *
 * @module
 */

import { TimeoutError, VatError } from "../errors.ts";

/** How much console output is kept in memory; older text is dropped. */
const _KEPT_CHARS = 1024 * 1024;

/** A line that the guest printed. */
export interface ConsoleLine {
  /** The line, without its line ending. */
  text: string;
  /** The pattern's match in it. */
  match: RegExpExecArray;
  /** The position (in characters of output) just after the line's newline. */
  end: number;
}

interface _Waiter {
  pattern: RegExp;
  from: number;
  resolve: (line: ConsoleLine) => void;
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * The guest's serial console. Output positions count characters since the
 * connection was made; `\r\n` is stored as `\n`.
 */
export class SerialConsole {
  /** Resolves once the connection has closed (QEMU exited, or `close()`). */
  readonly closed: Promise<void>;
  #conn: Deno.UnixConn;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  /** Kept output; `#text[0]` is at position `#base`. */
  #text = "";
  #base = 0;
  #waiters = new Set<_Waiter>();
  #isClosed = false;

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#writer = conn.writable.getWriter();
    this.closed = this.#readLoop();
  }

  /** Connects to the chardev socket at `path`; throws Deno's errors if nobody listens. */
  static async connect(path: string): Promise<SerialConsole> {
    return new SerialConsole(await Deno.connect({ transport: "unix", path }));
  }

  /** The position after the last character received: pass it to `waitForLine()`. */
  get position(): number {
    return this.#base + this.#text.length;
  }

  /** The output kept in memory (the last megabyte or so). */
  text(): string {
    return this.#text;
  }

  /** Types `text` into the console, as is. Throws `VatError` once the console closed. */
  async write(text: string): Promise<void> {
    if (this.#isClosed) throw new VatError("cannot write to the serial console: it is closed");
    try {
      await this.#writer.write(new TextEncoder().encode(text));
    } catch (err) {
      throw new VatError("cannot write to the serial console: it closed", { cause: err });
    }
  }

  /** Types `line` and a newline. */
  writeLine(line: string): Promise<void> {
    return this.write(`${line}\n`);
  }

  /**
   * Resolves with the first complete line that starts at or after position `from`
   * (default 0: any line received so far or later) and matches `pattern`. The first
   * line considered starts exactly at `from`, which may be mid-line; use a pattern
   * that is not anchored at `^`. Rejects with `TimeoutError` after `timeoutMs`, or `VatError` if
   * the console closes first; both messages end with the console's last lines.
   */
  waitForLine(
    pattern: RegExp,
    options: { timeoutMs: number; from?: number },
  ): Promise<ConsoleLine> {
    const from = options.from ?? 0;
    const found = this.#find(pattern, from);
    if (typeof found !== "number") return Promise.resolve(found);
    if (this.#isClosed) {
      return Promise.reject(this.#failure(`the console closed before a line matched ${pattern}`));
    }
    return new Promise((resolve, reject) => {
      const waiter: _Waiter = {
        pattern,
        from,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(
            this.#failure(
              `no line matching ${pattern} within ${options.timeoutMs} ms`,
              TimeoutError,
            ),
          );
        }, options.timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /**
   * Types `line`, then waits for the first reply line matching `reply` printed after
   * it was typed. The caller keeps one request in flight at a time.
   */
  async request(line: string, reply: RegExp, timeoutMs: number): Promise<ConsoleLine> {
    const from = this.position;
    await this.writeLine(line);
    return this.waitForLine(reply, { from, timeoutMs });
  }

  /** Closes the connection (the guest's output then goes to QEMU's log file only). */
  close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  async #readLoop(): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const piece of this.#conn.readable) {
        this.#append(decoder.decode(piece, { stream: true }));
      }
    } catch {
      // The connection broke: QEMU is gone or we closed it.
    } finally {
      this.close();
      for (const waiter of this.#waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(
          this.#failure(`the console closed before a line matched ${waiter.pattern}`),
        );
      }
      this.#waiters.clear();
    }
  }

  #append(text: string): void {
    this.#text += text.replaceAll("\r\n", "\n");
    if (this.#text.length > _KEPT_CHARS) {
      const drop = this.#text.length - _KEPT_CHARS / 2;
      this.#text = this.#text.slice(drop);
      this.#base += drop;
    }
    for (const waiter of this.#waiters) {
      const found = this.#find(waiter.pattern, waiter.from);
      if (typeof found === "number") {
        // Lines before this position did not match: do not scan them again.
        waiter.from = found;
        continue;
      }
      this.#waiters.delete(waiter);
      clearTimeout(waiter.timer);
      waiter.resolve(found);
    }
  }

  /**
   * The first complete line at or after `from` matching `pattern`; if there is none,
   * the position of the first line not yet complete.
   */
  #find(pattern: RegExp, from: number): ConsoleLine | number {
    let start = Math.max(from - this.#base, 0);
    while (true) {
      const newline = this.#text.indexOf("\n", start);
      if (newline < 0) return this.#base + start;
      const text = this.#text.slice(start, newline).replace(/\r/g, "");
      pattern.lastIndex = 0;
      const match = pattern.exec(text);
      if (match) return { text, match, end: this.#base + newline + 1 };
      start = newline + 1;
    }
  }

  #failure(message: string, kind: typeof VatError = VatError): VatError {
    const tail = this.#text.split("\n").slice(-15).join("\n").trim();
    return new kind(tail ? `${message}; the console's last lines:\n${tail}` : message);
  }
}
