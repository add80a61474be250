/**
 * `ReplyWriter`: whole messages onto a connection, one at a time.
 *
 * @module
 */

/** Anything that writes like a `Deno.Conn`. */
export interface ByteSink {
  write(data: Uint8Array): Promise<number>;
}

/**
 * Small messages queued behind a write in progress go out together in one write of
 * up to this many bytes (copied into one buffer): a burst of short replies then
 * costs one system call instead of one each. Larger messages are written alone,
 * from the caller's buffer.
 */
const _COALESCE_BYTES = 64 * 1024;

interface _Queued {
  message: Uint8Array;
  written: () => void;
}

/**
 * Writes messages in the order they are sent, each one whole, so the replies of
 * concurrent requests never interleave. Once a write fails (the peer went away)
 * every later message is dropped; `failure` says why.
 */
export class ReplyWriter {
  #sink: ByteSink;
  #queue: _Queued[] = [];
  #pumping: Promise<void> | undefined;
  #batch = new Uint8Array(_COALESCE_BYTES);
  #failure: unknown;

  constructor(sink: ByteSink) {
    this.#sink = sink;
  }

  /** The error that stopped the writer, if one did. */
  get failure(): unknown {
    return this.#failure;
  }

  /**
   * Queues `message`; resolves once it is written or dropped, never rejects. The
   * caller must not change `message` before then.
   */
  send(message: Uint8Array): Promise<void> {
    return new Promise((written) => {
      this.#queue.push({ message, written });
      this.#pumping ??= this.#pump();
    });
  }

  /** Resolves once every message sent so far is written or dropped. */
  async drained(): Promise<void> {
    while (this.#pumping) await this.#pumping;
  }

  async #pump(): Promise<void> {
    const queue = this.#queue;
    while (queue.length > 0) {
      // The first message always goes; small ones behind it join it while they fit.
      let count = 1;
      let bytes = queue[0].message.length;
      while (
        count < queue.length && bytes + queue[count].message.length <= _COALESCE_BYTES
      ) {
        bytes += queue[count++].message.length;
      }
      const batch = queue.splice(0, count);
      let data = batch[0].message;
      if (count > 1) {
        let at = 0;
        for (const { message } of batch) {
          this.#batch.set(message, at);
          at += message.length;
        }
        data = this.#batch.subarray(0, bytes);
      }
      await this.#writeAll(data);
      for (const { written } of batch) written();
    }
    this.#pumping = undefined;
  }

  async #writeAll(data: Uint8Array): Promise<void> {
    if (this.#failure !== undefined) return;
    try {
      let done = 0;
      while (done < data.length) done += await this.#sink.write(data.subarray(done));
    } catch (err) {
      this.#failure = err;
    }
  }
}
