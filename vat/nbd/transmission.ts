/**
 * The NBD transmission phase for one connection: requests are read one after the
 * other, each is handed to the device at once without waiting for the ones before
 * it, and replies (simple replies only) are written whole, in the order they
 * complete.
 *
 * @module
 */

import type { BufferedReader } from "./buffered_reader.ts";
import type { BufferPool } from "./buffer_pool.ts";
import type { ChosenExport } from "./handshake.ts";
import type { ReplyWriter } from "./reply_writer.ts";
import { deviceErrorCode, type ExportLimits, requestErrorCode } from "./nbd_errors.ts";
import { MAX_REQUEST_BYTES } from "./nbd_export.ts";
import {
  CMD_DISC,
  CMD_FLAG_FUA,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  ESHUTDOWN,
  REQUEST_BYTES,
  REQUEST_MAGIC,
  SIMPLE_REPLY_BYTES,
  SIMPLE_REPLY_MAGIC,
} from "./nbd_protocol.ts";
import type { BlockDevice } from "../disk/block_device.ts";
import { ProtocolError } from "../errors.ts";

/** How a connection's transmission phase reports and is stopped. */
export interface TransmissionOptions {
  /** Where device failures and protocol violations are reported. */
  log: (message: string, err?: unknown) => void;
  /**
   * Aborted when the server shuts down: later requests get ESHUTDOWN, and once the
   * requests in flight are answered the connection is hung up.
   */
  signal: AbortSignal;
  /** Closes the connection (and so ends a pending read). */
  hangUp: () => void;
  /** Where request buffers come from; shared by the server's connections. */
  pool: BufferPool;
  /** Counts the requests read, across the server's connections. */
  counts?: { requests: number };
}

/**
 * Requests in flight per connection, counted from the moment their header is read
 * until their reply is written; at the limit the server stops reading requests, so
 * a client that sends faster than the device serves (or reads no replies) is held
 * back instead of filling memory.
 */
const _MAX_INFLIGHT_REQUESTS = 128;
const _MAX_INFLIGHT_BYTES = 64 * 1024 * 1024;

/**
 * A write longer than the maximum block size is refused with EINVAL once its payload
 * has been read and dropped, unless the payload is longer than this: then the
 * connection is dropped, as the spec allows.
 */
const _MAX_SKIPPED_WRITE_BYTES = 2 * MAX_REQUEST_BYTES;

const _COMMAND_NAMES: Record<number, string> = {
  [CMD_READ]: "read",
  [CMD_WRITE]: "write",
  [CMD_FLUSH]: "flush",
  [CMD_TRIM]: "trim",
  [CMD_WRITE_ZEROES]: "write-zeroes",
};

/**
 * Serves requests for `chosen` until the client disconnects (`CMD_DISC` or hanging
 * up) or the server shuts down; returns once every request read has been answered
 * (or its answer dropped because the client went away). Throws `ProtocolError` for a
 * request that cannot be parsed (bad magic, an impossibly long write); the caller
 * then drops the connection.
 */
export async function transmit(
  reader: BufferedReader,
  writer: ReplyWriter,
  chosen: ChosenExport,
  options: TransmissionOptions,
): Promise<void> {
  const { device } = chosen;
  const limits: ExportLimits = {
    sizeBytes: device.sizeBytes,
    readOnly: device.readOnly,
    maxRequestBytes: MAX_REQUEST_BYTES,
  };
  const { pool } = options;
  const inflight = new _Inflight();
  const header = new Uint8Array(REQUEST_BYTES);
  const view = new DataView(header.buffer);
  let stopping = false;
  const stop = async () => {
    stopping = true;
    await inflight.idle();
    await writer.drained();
    options.hangUp();
  };
  if (options.signal.aborted) void stop();
  else options.signal.addEventListener("abort", stop, { once: true });

  try {
    while (writer.failure === undefined) {
      while (inflight.full) await inflight.released();
      if (!(await reader.readFull(header))) break;
      const magic = view.getUint32(0);
      if (magic !== REQUEST_MAGIC) {
        throw new ProtocolError(`bad request magic 0x${magic.toString(16)} from client`);
      }
      const request: _Request = {
        flags: view.getUint16(4),
        command: view.getUint16(6),
        cookieHigh: view.getUint32(8),
        cookieLow: view.getUint32(12),
        // Offsets beyond 2^53 lose precision here, but are past the end of any disk.
        offset: view.getUint32(16) * 2 ** 32 + view.getUint32(20),
        length: view.getUint32(24),
      };
      const { command, length } = request;
      if (options.counts) options.counts.requests++;
      if (command === CMD_DISC) break;

      // One buffer per request: room for the reply header, then a write's payload or
      // a read's data.
      let buffer: Uint8Array | undefined;
      if (command === CMD_WRITE) {
        if (length > MAX_REQUEST_BYTES) {
          if (length > _MAX_SKIPPED_WRITE_BYTES) {
            throw new ProtocolError(`client sent a ${length}-byte write, too long to skip`);
          }
          await reader.skip(length);
        } else {
          buffer = pool.take(length);
          if (length > 0 && !(await reader.readFull(buffer.subarray(SIMPLE_REPLY_BYTES)))) {
            throw new ProtocolError(`connection closed before a ${length}-byte write payload`);
          }
        }
      }
      const error = stopping
        ? ESHUTDOWN
        : requestErrorCode(command, request.flags, request.offset, length, limits);
      buffer ??= pool.take(command === CMD_READ && error === 0 ? length : 0);

      const held = buffer;
      inflight.add(held.length);
      _answer(request, error, held, chosen, writer, options.log).then(() => {
        inflight.remove(held.length);
        pool.give(held);
      });
    }
  } finally {
    options.signal.removeEventListener("abort", stop);
    await inflight.idle();
    await writer.drained();
  }
}

/** A parsed request header. */
interface _Request {
  flags: number;
  command: number;
  cookieHigh: number;
  cookieLow: number;
  offset: number;
  length: number;
}

/**
 * Answers one request: with `error` if the server refused it, else with what the
 * device did. `buffer` holds room for the reply header, then a write's payload or
 * room for a read's data. Resolves once the reply is written (or dropped); never
 * rejects.
 */
async function _answer(
  request: _Request,
  error: number,
  buffer: Uint8Array,
  chosen: ChosenExport,
  writer: ReplyWriter,
  log: TransmissionOptions["log"],
): Promise<void> {
  const { command, offset, length } = request;
  const header = new DataView(buffer.buffer, buffer.byteOffset, SIMPLE_REPLY_BYTES);
  header.setUint32(0, SIMPLE_REPLY_MAGIC);
  header.setUint32(8, request.cookieHigh);
  header.setUint32(12, request.cookieLow);
  if (error === 0) {
    try {
      await _execute(chosen.device, request, buffer.subarray(SIMPLE_REPLY_BYTES));
    } catch (err) {
      error = deviceErrorCode(err);
      log(
        `NBD export ${JSON.stringify(chosen.name)}: ${_COMMAND_NAMES[command]} of ` +
          `${length} bytes at offset ${offset} failed: ${_message(err)}`,
        err,
      );
    }
  }
  header.setUint32(4, error);
  // Only a successful read carries data.
  const replyBytes = command === CMD_READ && error === 0
    ? SIMPLE_REPLY_BYTES + length
    : SIMPLE_REPLY_BYTES;
  await writer.send(buffer.subarray(0, replyBytes));
}

/** Performs an accepted request; `data` is a write's payload or room for a read's data. */
async function _execute(device: BlockDevice, request: _Request, data: Uint8Array) {
  const { command, offset, length } = request;
  if (length === 0 && command !== CMD_FLUSH) return;
  switch (command) {
    case CMD_READ:
      return await device.read(offset, data);
    case CMD_WRITE:
      await device.write(offset, data);
      break;
    case CMD_FLUSH:
      return await device.flush();
    case CMD_TRIM:
      await device.trim(offset, length);
      break;
    case CMD_WRITE_ZEROES:
      // NBD_CMD_FLAG_NO_HOLE asks for allocated zeroes; a BlockDevice has no way to
      // promise that, and the zeroes read back the same either way.
      await device.writeZeroes(offset, length);
      break;
  }
  if ((request.flags & CMD_FLAG_FUA) !== 0) await device.flush();
}

function _message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Counts the requests and bytes in flight, and wakes the reader as they drain. */
class _Inflight {
  #count = 0;
  #bytes = 0;
  #wake: (() => void) | undefined;
  #wakeIdle: (() => void) | undefined;

  get full(): boolean {
    return this.#count >= _MAX_INFLIGHT_REQUESTS || this.#bytes >= _MAX_INFLIGHT_BYTES;
  }

  add(bytes: number): void {
    this.#count++;
    this.#bytes += bytes;
  }

  remove(bytes: number): void {
    this.#count--;
    this.#bytes -= bytes;
    this.#wake?.();
    if (this.#count === 0) this.#wakeIdle?.();
  }

  /** Resolves at the next `remove`. */
  released(): Promise<void> {
    return new Promise((resolve) => {
      const previous = this.#wake;
      this.#wake = () => {
        this.#wake = undefined;
        previous?.();
        resolve();
      };
    });
  }

  /** Resolves once nothing is in flight. */
  async idle(): Promise<void> {
    while (this.#count > 0) {
      await new Promise<void>((resolve) => {
        const previous = this.#wakeIdle;
        this.#wakeIdle = () => {
          this.#wakeIdle = undefined;
          previous?.();
          resolve();
        };
      });
    }
  }
}
