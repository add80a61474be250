/**
 * A `Store` wrapper that keeps a repository's small objects usable offline: every
 * object but the chunks (`repo.json`, `latest`, `versions/...`) that is read from the
 * remote store successfully is copied into a local mirror directory, and served from
 * there when the remote fails transiently or is silent for a short timeout (no answer,
 * or no bytes of an answer under way: a large object on a slow link may take as long
 * as it needs while it keeps coming). Chunks are never mirrored (the chunk cache holds
 * them) and always go to the remote. Writes go to the remote only (then update the
 * mirror), so publishing still needs the repository. The mirror is a `FileStore`, so its writes are atomic.
 *
 * `latest` comes from the remote whenever it answers; the mirror's copy is what the
 * VAT last saw, used only while the remote cannot be reached.
 *
 * @module
 */

import { isRetryable, NotFoundError, TransientError } from "../errors.ts";
import {
  checkKey,
  checkPrefix,
  type ObjectInfo,
  type PutOptions,
  type ReadOptions,
  type Store,
} from "./store.ts";
import { FileStore } from "./store_file.ts";

/** Options of a `MirroredStore`. */
export interface MirroredStoreOptions {
  /** The remote's location, for messages (known before it is opened). */
  location: string;
  /** Opens the remote store; called lazily, and again after a failed attempt. */
  open: () => Promise<Store>;
  /** The local mirror directory of this repository (made when first written). */
  mirrorDir: string;
  /**
   * How long opening the remote may take, and how long a metadata read may go without
   * an answer or a byte of it (default 3 s).
   */
  connectTimeoutMs?: number;
  /**
   * After the remote failed, metadata reads go straight to the mirror for this long
   * (default 10 s), so one operation does not wait out the timeout at every read.
   */
  retryAfterMs?: number;
}

/** Keys that the chunk cache holds, never the mirror. */
function _isChunk(key: string): boolean {
  return key.startsWith("chunks/");
}

/** A store whose metadata is mirrored locally and served from there offline. */
export class MirroredStore implements Store {
  readonly location: string;
  readonly #open: () => Promise<Store>;
  readonly #mirror: FileStore;
  readonly #timeoutMs: number;
  readonly #retryAfterMs: number;
  #remote: Promise<Store> | null = null;
  #opened: Store | null = null;
  /** Until when (ms since the epoch) metadata reads skip the remote. */
  #offlineUntil = 0;
  #offline = false;

  constructor(options: MirroredStoreOptions) {
    this.location = options.location;
    this.#open = options.open;
    this.#mirror = new FileStore(options.mirrorDir);
    this.#timeoutMs = options.connectTimeoutMs ?? 3000;
    this.#retryAfterMs = options.retryAfterMs ?? 10_000;
  }

  /**
   * Whether the last attempt to reach the remote failed (transiently or by timeout);
   * reads since then were served by the mirror. A success clears it.
   */
  get offline(): boolean {
    return this.#offline;
  }

  /** The remote's answer while it is open; the mirror can list while it is not. */
  get canList(): boolean {
    return this.#opened?.canList ?? true;
  }

  async get(key: string, options?: ReadOptions): Promise<Uint8Array> {
    checkKey(key);
    if (_isChunk(key)) return await (await this.#remoteStore()).get(key, options);
    return await this.#read(
      key,
      async (remote, signal, renew) => {
        const data = await remote.get(key, {
          ...options,
          signal,
          onProgress: (bytes) => {
            renew(bytes);
            options?.onProgress?.(bytes);
          },
        });
        await this.#keep(key, data);
        return data;
      },
      () => this.#mirror.get(key, options),
      options?.signal,
    );
  }

  async getRange(
    key: string,
    offset: number,
    length: number,
    options?: Pick<ReadOptions, "signal">,
  ): Promise<Uint8Array> {
    checkKey(key);
    if (_isChunk(key)) {
      return await (await this.#remoteStore()).getRange(key, offset, length, options);
    }
    return await this.#read(
      key,
      (remote, signal) => remote.getRange(key, offset, length, { signal }),
      () => this.#mirror.getRange(key, offset, length, options),
      options?.signal,
    );
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    checkKey(key);
    if (_isChunk(key)) return await (await this.#remoteStore()).stat(key);
    return await this.#read(
      key,
      async (remote) => {
        const info = await remote.stat(key);
        // Gone from the remote (a version deleted by gc): gone from the mirror too.
        if (info === null) await this.#mirror.delete(key);
        return info;
      },
      () => this.#mirror.stat(key),
    );
  }

  async *list(prefix: string): AsyncIterable<string> {
    checkPrefix(prefix);
    let keys: string[];
    try {
      const remote = await this.#remoteStore();
      keys = [];
      for await (const key of remote.list(prefix)) keys.push(key);
    } catch (err) {
      // Offline, the mirror lists what it holds; it holds no chunks.
      if (!isRetryable(err) || prefix === "" || _isChunk(prefix)) throw err;
      this.#wentOffline();
      yield* this.#mirror.list(prefix);
      return;
    }
    yield* keys;
  }

  async put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    checkKey(key);
    await (await this.#remoteStore()).put(key, data, options);
    if (!_isChunk(key)) await this.#mirror.put(key, data);
  }

  async create(key: string, data: Uint8Array): Promise<boolean> {
    checkKey(key);
    const created = await (await this.#remoteStore()).create(key, data);
    if (created && !_isChunk(key)) await this.#mirror.put(key, data);
    return created;
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    await (await this.#remoteStore()).delete(key);
    if (!_isChunk(key)) await this.#mirror.delete(key);
  }

  async close(): Promise<void> {
    const remote = this.#remote;
    this.#remote = null;
    this.#opened = null;
    await remote?.then((store) => store.close(), () => {});
    await this.#mirror.close();
  }

  /**
   * A metadata read: from the remote (within the connect timeout, after which its
   * download is cancelled) unless it failed a moment ago; from the mirror when the
   * remote fails transiently. A NotFoundError from the remote is the truth (the object
   * is gone); it also drops the mirror's copy.
   */
  async #read<T>(
    key: string,
    fromRemote: (
      remote: Store,
      signal: AbortSignal,
      renew: (bytes: number) => void,
    ) => Promise<T>,
    fromMirror: () => Promise<T>,
    callerSignal?: AbortSignal,
  ): Promise<T> {
    if (Date.now() >= this.#offlineUntil) {
      try {
        const remote = await this.#remoteStore();
        const value = await _withTimeout(
          (signal, renew) => fromRemote(remote, signal, renew),
          this.#timeoutMs,
          this.location,
          callerSignal,
        );
        this.#offline = false;
        return value;
      } catch (err) {
        if (err instanceof NotFoundError) {
          await this.#mirror.delete(key);
          throw err;
        }
        if (!isRetryable(err)) throw err;
        this.#wentOffline();
        try {
          return await fromMirror();
        } catch (mirrorErr) {
          // Nothing mirrored: the remote's failure is the one to report.
          if (mirrorErr instanceof NotFoundError) throw err;
          throw mirrorErr;
        }
      }
    }
    try {
      return await fromMirror();
    } catch (err) {
      if (err instanceof NotFoundError) {
        throw new TransientError(
          `${this.location} cannot be reached and ${key} is not held locally`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /** Copies an object into the mirror, unless the mirror holds it already. */
  async #keep(key: string, data: Uint8Array): Promise<void> {
    try {
      const held = await this.#mirror.get(key);
      if (held.length === data.length && held.every((b, i) => b === data[i])) return;
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    await this.#mirror.put(key, data);
  }

  #wentOffline(): void {
    this.#offline = true;
    this.#offlineUntil = Date.now() + this.#retryAfterMs;
  }

  /** The remote store, opened once (a failed open is tried again next time). */
  #remoteStore(): Promise<Store> {
    if (!this.#remote) {
      const raw = this.#open();
      const opening = _withTimeout(() => raw, this.#timeoutMs, this.location);
      this.#remote = opening;
      opening.then((store) => {
        if (this.#remote === opening) this.#opened = store;
        else store.close().catch(() => {});
      }, () => {
        if (this.#remote === opening) this.#remote = null;
        // A store that opens after its timeout is of no use to anyone.
        raw.then((store) => store.close()).catch(() => {});
      });
    }
    return this.#remote;
  }
}

/**
 * A download that keeps coming gets more time, but no less than this rate: a server
 * that trickles a byte now and then does not hold a read (and the VAT's offline
 * switch) for ever. 4 KiB/s is far below any link a VAT works over.
 */
const _MIN_BYTES_PER_SECOND = 4096;

/**
 * `start(signal, renew)`'s promise, or a `TransientError` once `ms` pass without an
 * answer or a call of `renew(bytes)` (each piece of a download under way calls it),
 * or once the download falls below `_MIN_BYTES_PER_SECOND` on average after its
 * first `ms`. Then `signal` is aborted so that the download stops (a transport that
 * ignores it has its late answer dropped; a store opened late is closed by the
 * caller). The caller's own signal aborts it as well.
 */
function _withTimeout<T>(
  start: (signal: AbortSignal, renew: (bytes: number) => void) => Promise<T>,
  ms: number,
  location: string,
  callerSignal?: AbortSignal,
): Promise<T> {
  const controller = new AbortController();
  const timedOut = new TransientError(
    `${location} did not answer within ${ms} ms, or sent its answer too slowly`,
  );
  const onCallerAbort = () => controller.abort(callerSignal?.reason);
  if (callerSignal?.aborted) onCallerAbort();
  callerSignal?.addEventListener("abort", onCallerAbort, { once: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  let settled = false;
  const startedMs = performance.now();
  let received = 0;
  const arm = (bytes = 0) => {
    received += bytes;
    clearTimeout(timer);
    if (settled || controller.signal.aborted) return;
    const budgetEndMs = startedMs + ms + (received / _MIN_BYTES_PER_SECOND) * 1000;
    const waitMs = Math.max(0, Math.min(ms, budgetEndMs - performance.now()));
    timer = setTimeout(() => controller.abort(timedOut), waitMs);
  };
  arm();
  const promise = start(controller.signal, arm);
  promise.catch(() => {});
  const done = () => {
    settled = true;
    clearTimeout(timer);
    callerSignal?.removeEventListener("abort", onCallerAbort);
  };
  return Promise.race([
    promise.finally(done),
    new Promise<T>((_, reject) => {
      if (controller.signal.aborted) reject(controller.signal.reason);
      controller.signal.addEventListener("abort", () => reject(controller.signal.reason), {
        once: true,
      });
    }),
  ]);
}
