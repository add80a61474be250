/**
 * `LinkStore`: a `Store` wrapper that stands for the user's uplink in front of a local
 * data repository. Every byte written (`put`, `create`) first takes its turn at a
 * `RateLimiter` (the emulated link: 48 000 bytes/s for 384 kbit/s DSL), so chunks,
 * disk indexes, manifests and lease renewals all share the one uplink, as they would
 * on the wire; and it counts them by kind. Reads are not limited (the downlink of an
 * asymmetric line is several times faster and the backup barely reads). Every write
 * also waits one round trip (`rttMs`) once its bytes are through, as a request's reply
 * would (writes in flight overlap their waits). Not modelled: the HTTP and TCP overhead
 * of a real transport, and slow start.
 *
 * @module
 */

import type { RateLimiter } from "../../vat/rate_limiter.ts";
import type { ObjectInfo, PutOptions, ReadOptions, Store } from "../../vat/repo/store.ts";

/** Bytes written through the link, by the kind of object. */
export interface LinkBytes {
  /** Sealed chunk objects (`chunks/`). */
  chunks: number;
  /** Disk indexes and manifests (`versions/`). */
  versions: number;
  /** Everything else: leases, `latest`, `repo.json`. */
  other: number;
  puts: number;
}

/** `inner` behind an uplink of `limiter`'s rate. */
export class LinkStore implements Store {
  readonly location: string;
  readonly canList: boolean;
  readonly limiter: RateLimiter;
  readonly sent: LinkBytes = { chunks: 0, versions: 0, other: 0, puts: 0 };
  readonly rttMs: number;
  readonly #inner: Store;

  constructor(inner: Store, limiter: RateLimiter, rttMs = 0) {
    this.#inner = inner;
    this.limiter = limiter;
    this.rttMs = rttMs;
    this.location = `${inner.location} (emulated uplink)`;
    this.canList = inner.canList;
  }

  /** Total bytes written through the link. */
  get sentBytes(): number {
    return this.sent.chunks + this.sent.versions + this.sent.other;
  }

  get(key: string, options?: ReadOptions): Promise<Uint8Array> {
    return this.#inner.get(key, options);
  }

  getRange(
    key: string,
    offset: number,
    length: number,
    options?: Pick<ReadOptions, "signal">,
  ): Promise<Uint8Array> {
    return this.#inner.getRange(key, offset, length, options);
  }

  async put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    await this.#send(key, data);
    await this.#inner.put(key, data, options);
  }

  async create(key: string, data: Uint8Array): Promise<boolean> {
    await this.#send(key, data);
    return await this.#inner.create(key, data);
  }

  stat(key: string): Promise<ObjectInfo | null> {
    return this.#inner.stat(key);
  }

  list(prefix: string): AsyncIterable<string> {
    return this.#inner.list(prefix);
  }

  delete(key: string): Promise<void> {
    return this.#inner.delete(key);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  async #send(key: string, data: Uint8Array): Promise<void> {
    await this.limiter.take(data.length);
    // Chunk keys are shared by all subscriptions; the rest sit under `subscriptions/<name>/`.
    const rest = key.replace(/^subscriptions\/[^/]+\//, "");
    if (rest.startsWith("chunks/")) this.sent.chunks += data.length;
    else if (rest.startsWith("versions/")) this.sent.versions += data.length;
    else this.sent.other += data.length;
    this.sent.puts++;
    if (this.rttMs > 0) await new Promise((r) => setTimeout(r, this.rttMs));
  }
}
