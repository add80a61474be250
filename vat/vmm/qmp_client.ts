/**
 * `QmpClient`: the QEMU Machine Protocol over a Unix socket, the one way vat
 * controls a running QEMU (docs: QEMU's `docs/interop/qmp-spec.rst`).
 *
 * QMP is JSON objects, one per line. The server greets with `{"QMP": {...}}`; the
 * client must send `qmp_capabilities` before anything else. A command
 * `{"execute": NAME, "arguments": {...}, "id": ID}` gets `{"return": ..., "id": ID}` or
 * `{"error": {"class": ..., "desc": ...}, "id": ID}`; commands are answered in order,
 * so several may be in flight. Events `{"event": NAME, "data": {...}, "timestamp": ...}`
 * arrive at any time, between answers.
 *
 * @module
 */

import { ProtocolError, VatError } from "../errors.ts";

/** Something went wrong talking to QEMU over QMP. */
export class QmpError extends VatError {}

/** QEMU refused a command; the message carries QEMU's own text. */
export class QmpCommandError extends QmpError {
  /** QEMU's error class, e.g. `GenericError`, `CommandNotFound`, `DeviceNotActive`. */
  readonly errorClass: string;
  /** The command QEMU refused. */
  readonly command: string;

  constructor(command: string, errorClass: string, description: string) {
    super(`QEMU refused ${command}: ${description}`);
    this.command = command;
    this.errorClass = errorClass;
  }
}

/** The connection closed (QEMU exited) before a command was answered. */
export class QmpClosedError extends QmpError {}

/** An asynchronous event from QEMU. */
export interface QmpEvent {
  /** The event's name, e.g. `SHUTDOWN`, `STOP`, `RESUME`, `BLOCK_IO_ERROR`. */
  event: string;
  data: Record<string, unknown>;
  /** When QEMU emitted it, in milliseconds since the epoch. */
  timeMs: number;
}

/** The greeting's version, e.g. `{ major: 7, minor: 2, micro: 0 }`. */
export interface QmpVersion {
  major: number;
  minor: number;
  micro: number;
}

/** Options for `QmpClient.execute()`. */
export interface QmpExecuteOptions {
  /**
   * Give up (with `QmpError`) if QEMU has not answered within this time; the answer,
   * if it comes later, is dropped. Default 30 s. `Infinity` waits for ever.
   */
  timeoutMs?: number;
}

const _DEFAULT_TIMEOUT_MS = 30_000;

/** The longest line accepted from QEMU; a longer one means a broken peer. */
const _MAX_LINE_CHARS = 16 * 1024 * 1024;

interface _Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer?: ReturnType<typeof setTimeout>;
}

/** A QMP connection, in command mode once `connect()` resolved. */
export class QmpClient {
  /** QEMU's version, from its greeting. */
  readonly version: QmpVersion;
  /** Resolves once the connection has closed, by either side. */
  readonly closed: Promise<void>;
  #conn: Deno.UnixConn;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #lines: AsyncIterator<string>;
  #pending = new Map<number, _Pending>();
  #listeners = new Set<(event: QmpEvent) => void>();
  #nextId = 1;
  #isClosed = false;

  private constructor(
    conn: Deno.UnixConn,
    lines: AsyncIterator<string>,
    version: QmpVersion,
  ) {
    this.#conn = conn;
    this.#lines = lines;
    this.#writer = conn.writable.getWriter();
    this.version = version;
    this.closed = this.#readLoop();
  }

  /**
   * Connects to the QMP socket at `path`, reads the greeting and enters command mode.
   * Throws Deno's connection errors (`NotFound`, `ConnectionRefused`) if nobody
   * listens, `ProtocolError` if the peer does not greet like QEMU.
   */
  static async connect(path: string): Promise<QmpClient> {
    const conn = await Deno.connect({ transport: "unix", path });
    try {
      const lines = _jsonLines(conn.readable);
      const first = await lines.next();
      if (first.done) throw new ProtocolError(`QMP socket ${path} closed before QEMU greeted`);
      const greeting = _parse(first.value);
      const qmp = greeting.QMP as { version?: { qemu?: QmpVersion } } | undefined;
      if (!qmp || typeof qmp !== "object") {
        throw new ProtocolError(`${path} is not a QMP socket: it greeted with ${first.value}`);
      }
      const version = qmp.version?.qemu ?? { major: 0, minor: 0, micro: 0 };
      const client = new QmpClient(conn, lines, version);
      try {
        await client.execute("qmp_capabilities");
      } catch (err) {
        client.close();
        throw err;
      }
      return client;
    } catch (err) {
      try {
        conn.close();
      } catch {
        // Already closed by the client above.
      }
      throw err;
    }
  }

  /**
   * Runs a command and resolves to its `return` value. Rejects with
   * `QmpCommandError` (QEMU's error text) if QEMU refuses it, `QmpClosedError` if the
   * connection closes first, `QmpError` on timeout.
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: QmpExecuteOptions = {},
  ): Promise<T> {
    if (this.#isClosed) {
      return Promise.reject(new QmpClosedError(`cannot run ${command}: QMP connection closed`));
    }
    const id = this.#nextId++;
    const message = JSON.stringify({ execute: command, arguments: args, id }) + "\n";
    return new Promise<T>((resolve, reject) => {
      const pending: _Pending = {
        command,
        resolve: resolve as (value: unknown) => void,
        reject,
      };
      const timeoutMs = options.timeoutMs ?? _DEFAULT_TIMEOUT_MS;
      if (Number.isFinite(timeoutMs)) {
        pending.timer = setTimeout(() => {
          this.#pending.delete(id);
          reject(new QmpError(`QEMU did not answer ${command} within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.#pending.set(id, pending);
      this.#writer.write(new TextEncoder().encode(message)).catch((err) => {
        this.#settle(id)?.reject(
          new QmpClosedError(`cannot send ${command}: QMP connection closed`, { cause: err }),
        );
      });
    });
  }

  /**
   * Calls `listener` with every event from now on, until the returned function is
   * called. Listeners run synchronously as events arrive; one that throws is ignored.
   */
  subscribe(listener: (event: QmpEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Resolves with the first event from now on for which `match` is true; rejects with
   * `QmpError` after `timeoutMs` or `QmpClosedError` if the connection closes first.
   * Call it before the command that causes the event.
   */
  nextEvent(match: (event: QmpEvent) => boolean, timeoutMs: number): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (settle: () => void) => {
        if (settled) return;
        settled = true;
        unsubscribe();
        clearTimeout(timer);
        settle();
      };
      const unsubscribe = this.subscribe((event) => {
        if (match(event)) finish(() => resolve(event));
      });
      const timer = setTimeout(
        () => finish(() => reject(new QmpError(`no expected QMP event within ${timeoutMs} ms`))),
        timeoutMs,
      );
      this.closed.then(() =>
        finish(() => reject(new QmpClosedError("QMP connection closed while waiting for an event")))
      );
    });
  }

  /** Closes the connection; commands in flight reject with `QmpClosedError`. */
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
    try {
      while (true) {
        const next = await this.#lines.next();
        if (next.done) break;
        this.#dispatch(_parse(next.value));
      }
    } catch {
      // A broken connection or a malformed message: either way QMP is unusable now,
      // and the commands in flight learn it below.
    } finally {
      this.close();
      for (const id of [...this.#pending.keys()]) {
        const pending = this.#settle(id)!;
        pending.reject(
          new QmpClosedError(`QMP connection closed before QEMU answered ${pending.command}`),
        );
      }
    }
  }

  #dispatch(message: Record<string, unknown>): void {
    if (typeof message.event === "string") {
      const ts = message.timestamp as { seconds?: number; microseconds?: number } | undefined;
      const event: QmpEvent = {
        event: message.event,
        data: (message.data as Record<string, unknown> | undefined) ?? {},
        timeMs: (ts?.seconds ?? 0) * 1000 + (ts?.microseconds ?? 0) / 1000,
      };
      for (const listener of [...this.#listeners]) {
        try {
          listener(event);
        } catch {
          // One listener's failure must not stop the others or the connection.
        }
      }
      return;
    }
    // Answers without an id (QEMU could not parse a request) cannot be matched; the
    // request then times out.
    if (typeof message.id !== "number") return;
    const pending = this.#settle(message.id);
    if (!pending) return;
    if ("error" in message) {
      const error = message.error as { class?: string; desc?: string };
      pending.reject(
        new QmpCommandError(
          pending.command,
          error.class ?? "Error",
          error.desc ?? "no reason given",
        ),
      );
    } else {
      pending.resolve(message.return);
    }
  }

  #settle(id: number): _Pending | undefined {
    const pending = this.#pending.get(id);
    if (!pending) return undefined;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    return pending;
  }
}

/** The lines of a byte stream, decoded as UTF-8, without their `\r\n` or `\n`. */
async function* _jsonLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const piece of stream) {
    buffered += decoder.decode(piece, { stream: true });
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line) yield line;
    }
    if (buffered.length > _MAX_LINE_CHARS) {
      throw new ProtocolError(`QMP message longer than ${_MAX_LINE_CHARS} characters`);
    }
  }
}

function _parse(line: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new ProtocolError(`QEMU sent a QMP line that is not JSON: ${line.slice(0, 200)}`, {
      cause: err,
    });
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ProtocolError(`QEMU sent a QMP message that is not an object: ${line.slice(0, 200)}`);
  }
  return value as Record<string, unknown>;
}
