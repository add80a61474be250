/**
 * `RetryingStore`: a `Store` wrapper that tries a call again when it fails in a way a
 * retry may cure (`isRetryable`: a `TransientError` such as HTTP 429/5xx, S3
 * `SlowDown`, a timeout, or a plain network failure), with exponential backoff and
 * jitter, bounded in attempts and in total time, honouring a server's `Retry-After`.
 * Every other failure (not found, refused, corrupt, bad input) is thrown at once.
 * `openStore` puts one around every transport it opens (docs/FORMAT.md, "Retries").
 *
 * Every call of `Store` may be repeated: reads have no effect, `put` and `delete` are
 * idempotent, and a `create` whose reply was lost finds its own bytes and returns true
 * (the `Store` contract). A listing is retried only until its first key was yielded.
 *
 * @module
 */

import { isRetryable, TransientError, UsageError } from "../errors.ts";
import type { ObjectInfo, PutOptions, ReadOptions, Store } from "./store.ts";

/** How a `RetryingStore` retries. */
export interface RetryPolicy {
  /** Tries per call, the first included (default 6). */
  maxAttempts?: number;
  /** The backoff before the first retry (default 200 ms); it doubles at each retry. */
  baseDelayMs?: number;
  /** The longest backoff (default 10 s). */
  maxDelayMs?: number;
  /**
   * The longest a call may take from its first try until it gives up (default 30 s):
   * no retry is started whose backoff would end later.
   */
  maxTotalMs?: number;
  /**
   * Retry only failures a server answered (a `TransientError` with a status, such as
   * 503 `SlowDown` or 429), never one that could not be reached or did not answer in
   * time (default false). For callers with their own answer to being offline: the
   * daemon's mirrored stores serve metadata from the mirror at once instead.
   */
  onlyAnswered?: boolean;
  /** The source of jitter, numbers in [0, 1) (default `Math.random`). */
  random?: () => number;
  /** Told of every retry before its backoff (logs, tests). */
  onRetry?: (retry: RetryEvent) => void;
}

/** One retry about to happen. */
export interface RetryEvent {
  /** The call and its key, e.g. "get chunks/ab/ab12...". */
  what: string;
  /** The attempt that failed (1 is the first try). */
  attempt: number;
  /** The wait before the next attempt. */
  delayMs: number;
  /** Whether the wait is the server's `Retry-After` rather than the backoff. */
  serverAsked: boolean;
  error: unknown;
}

const DEFAULTS = {
  maxAttempts: 6,
  baseDelayMs: 200,
  maxDelayMs: 10_000,
  maxTotalMs: 30_000,
  onlyAnswered: false,
};

/** A `Store` that retries what the store below fails transiently. */
export class RetryingStore implements Store {
  readonly location: string;
  readonly canList: boolean;
  readonly #next: Store;
  readonly #retry: Retrier;

  /** The store this one retries (`transportOf` looks through wrappers with it). */
  get inner(): Store {
    return this.#next;
  }

  constructor(next: Store, policy: RetryPolicy = {}) {
    this.#next = next;
    this.#retry = new Retrier(policy);
    this.location = next.location;
    this.canList = next.canList;
  }

  get(key: string, options?: ReadOptions): Promise<Uint8Array> {
    return this.#retry.run(`get ${key}`, this.location, () => {
      // A caller who gave up is not retried for.
      options?.signal?.throwIfAborted();
      return this.#next.get(key, options);
    });
  }

  getRange(key: string, offset: number, length: number): Promise<Uint8Array> {
    return this.#retry.run(
      `get ${key} at ${offset}+${length}`,
      this.location,
      () => this.#next.getRange(key, offset, length),
    );
  }

  put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    return this.#retry.run(`put ${key}`, this.location, () => this.#next.put(key, data, options));
  }

  create(key: string, data: Uint8Array): Promise<boolean> {
    return this.#retry.run(`create ${key}`, this.location, () => this.#next.create(key, data));
  }

  stat(key: string): Promise<ObjectInfo | null> {
    return this.#retry.run(`stat ${key}`, this.location, () => this.#next.stat(key));
  }

  sweepTemporary(olderThanMs: number): Promise<number> {
    return this.#next.sweepTemporary?.(olderThanMs) ?? Promise.resolve(0);
  }

  delete(key: string): Promise<void> {
    return this.#retry.run(`delete ${key}`, this.location, () => this.#next.delete(key));
  }

  async *list(prefix: string): AsyncIterable<string> {
    // Retried until the first key arrives; after that a failure is the caller's, who
    // cannot be handed the keys already given a second time.
    const first = await this.#retry.run(`list ${prefix}`, this.location, async () => {
      const keys = this.#next.list(prefix)[Symbol.asyncIterator]();
      return { keys, head: await keys.next() };
    });
    for (let item = first.head; !item.done; item = await first.keys.next()) yield item.value;
  }

  /** Wakes calls waiting to retry (they fail with their last error) and closes the store. */
  async close(): Promise<void> {
    this.#retry.stop();
    await this.#next.close();
  }
}

/**
 * The retry loop, for stores and for other calls to a repository's server (opening
 * an HTTP store asks the server what it is). Each call retries on its own.
 */
export class Retrier {
  readonly #policy: Required<Omit<RetryPolicy, "onRetry">> & Pick<RetryPolicy, "onRetry">;
  readonly #waiting = new Set<() => void>();
  #stopped = false;

  constructor(policy: RetryPolicy = {}) {
    this.#policy = { ...DEFAULTS, random: Math.random, ...policy };
    const { maxAttempts, baseDelayMs, maxDelayMs, maxTotalMs } = this.#policy;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
      throw new UsageError(`retry attempts ${maxAttempts} is not a whole number of at least 1`);
    }
    for (const [name, ms] of Object.entries({ baseDelayMs, maxDelayMs, maxTotalMs })) {
      if (!Number.isFinite(ms) || ms < 0) throw new UsageError(`retry ${name} ${ms} is not >= 0`);
    }
  }

  /**
   * The backoff before retry number `retry` (1 for the first): an even spread over
   * the upper half of min(maxDelayMs, baseDelayMs * 2^(retry-1)). Half-range jitter
   * keeps each wait at least as long as the one before (the ranges only touch) while
   * still spreading clients that failed together.
   */
  backoffMs(retry: number): number {
    const { baseDelayMs, maxDelayMs, random } = this.#policy;
    const cap = Math.min(maxDelayMs, baseDelayMs * 2 ** (retry - 1));
    return cap / 2 + random() * cap / 2;
  }

  /** Runs `call`, retrying it as the policy says; `what` and `where` name it in errors. */
  async run<T>(what: string, where: string, call: () => Promise<T>): Promise<T> {
    const { maxAttempts, maxTotalMs, onlyAnswered, onRetry } = this.#policy;
    const started = performance.now();
    for (let attempt = 1;; attempt++) {
      try {
        return await call();
      } catch (err) {
        if (!isRetryable(err)) throw err;
        if (onlyAnswered && !(err instanceof TransientError && err.status !== undefined)) {
          throw err;
        }
        const elapsedMs = performance.now() - started;
        const asked = err instanceof TransientError ? err.retryAfterMs : undefined;
        const backoffMs = this.backoffMs(attempt);
        const serverAsked = asked !== undefined && asked > backoffMs;
        const delayMs = serverAsked ? asked : backoffMs;
        let why: string | null = null;
        if (this.#stopped) why = "the store was closed";
        else if (attempt >= maxAttempts) why = `${attempt} attempts`;
        else if (elapsedMs + delayMs > maxTotalMs) {
          why = serverAsked
            ? `the server asked to wait ${_seconds(delayMs)}, beyond the ${
              _seconds(maxTotalMs)
            } retry budget`
            : `the ${_seconds(maxTotalMs)} retry budget`;
        }
        if (why !== null) {
          throw new TransientError(
            `${what} in ${where} failed ${attempt === 1 ? "once" : `${attempt} times`} over ` +
              `${_seconds(elapsedMs)} and gave up after ${why}: ${(err as Error).message}`,
            { cause: err, retryAfterMs: asked },
          );
        }
        onRetry?.({ what, attempt, delayMs, serverAsked, error: err });
        await this.#sleep(delayMs);
        if (this.#stopped) {
          throw new TransientError(
            `${what} in ${where} was waiting to be retried when the store was closed: ` +
              (err as Error).message,
            { cause: err },
          );
        }
      }
    }
  }

  /** Ends every wait at once; later failures are not retried. */
  stop(): void {
    this.#stopped = true;
    for (const wake of this.#waiting) wake();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiting.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#waiting.add(wake);
    });
  }
}

function _seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
