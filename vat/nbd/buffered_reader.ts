/**
 * `BufferedReader`: exact-length reads from a connection, for parsing a protocol.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";

/**
 * The rest of a message at least this long is read straight into the caller's
 * buffer instead of through ours: one copy fewer for write payloads.
 */
const _DIRECT_READ_BYTES = 16 * 1024;

/** Anything that reads like a `Deno.Conn`. */
export interface ByteSource {
  read(into: Uint8Array): Promise<number | null>;
}

/**
 * Reads exact byte counts from a stream. Small reads (message headers) are served
 * from one buffer filled by large reads, so a burst of pipelined requests costs one
 * system call; large reads (write payloads) go straight into the caller's buffer
 * once the buffered bytes are used up.
 */
export class BufferedReader {
  #source: ByteSource;
  #buffer: Uint8Array;
  #start = 0;
  #end = 0;

  constructor(source: ByteSource, bufferBytes = 256 * 1024) {
    this.#source = source;
    this.#buffer = new Uint8Array(bufferBytes);
  }

  /** How many bytes are buffered, read from the source but not yet by the caller. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * Fills `into` completely. Returns false if the stream ended cleanly before the
   * first byte; throws `ProtocolError` if it ended part way.
   */
  async readFull(into: Uint8Array): Promise<boolean> {
    const want = into.length;
    let done = this.#take(into);
    if (done === want) return true;
    while (done < want) {
      let n: number | null;
      if (want - done >= _DIRECT_READ_BYTES) {
        n = await this.#source.read(into.subarray(done));
      } else {
        n = await this.#fill();
        if (n !== null) n = this.#take(into.subarray(done));
      }
      if (n === null) {
        if (done === 0) return false;
        throw new ProtocolError(
          `connection closed after ${done} of a ${want}-byte message`,
        );
      }
      done += n;
    }
    return true;
  }

  /** Reads and discards `count` bytes; throws `ProtocolError` if the stream ends first. */
  async skip(count: number): Promise<void> {
    let left = count;
    while (left > 0) {
      const buffered = Math.min(left, this.buffered);
      this.#start += buffered;
      left -= buffered;
      if (left > 0 && (await this.#fill()) === null) {
        throw new ProtocolError(
          `connection closed after ${count - left} of ${count} bytes to skip`,
        );
      }
    }
  }

  /** Copies buffered bytes into `into`; returns how many. */
  #take(into: Uint8Array): number {
    const n = Math.min(into.length, this.#end - this.#start);
    if (n > 0) {
      into.set(this.#buffer.subarray(this.#start, this.#start + n));
      this.#start += n;
    }
    return n;
  }

  /** Reads once from the source into the (empty) buffer; null at the end of the stream. */
  async #fill(): Promise<number | null> {
    this.#start = 0;
    this.#end = 0;
    const n = await this.#source.read(this.#buffer);
    if (n !== null) this.#end = n;
    return n;
  }
}
