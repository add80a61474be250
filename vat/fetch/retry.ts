/**
 * The retry layer of the fetch path (docs/CACHE.md, "The fetch path"): a transport
 * wrapper that retries transient failures with exponential backoff (100 ms doubling
 * to 5 s) for a bounded time, so a link that drops for a few seconds costs the guest
 * a slow read, not an I/O error. A permanent failure (a missing or corrupt chunk)
 * fails at once.
 *
 * @module
 */

import { isRetryable, TransientError, VatError } from "../errors.ts";
import { toHex } from "../repo/chunk_codec.ts";
import type { ChunkTransport } from "./transport.ts";

/** The first backoff. */
const FIRST_DELAY_MS = 100;
/** The longest backoff. */
const MAX_DELAY_MS = 5000;

/** Options of `retrying`. */
export interface RetryOptions {
  /** How long a fetch is retried while the repository fails transiently (default 60 s). */
  retryForMs?: number;
  /** Where the final failure is said (default stderr). */
  log?: (line: string) => void;
}

/**
 * `transport`, retried while it fails transiently and another attempt fits in
 * `retryForMs`. The final failure is logged with the chunk's name and rethrown: a
 * permanent `VatError` as it is, anything else as a `TransientError` naming the chunk.
 */
export function retrying(transport: ChunkTransport, options: RetryOptions = {}): ChunkTransport {
  const retryForMs = options.retryForMs ?? 60_000;
  const log = options.log ?? ((line: string) => console.error(line));
  return async function fetchWithRetry(hash) {
    const deadline = performance.now() + retryForMs;
    let delayMs = FIRST_DELAY_MS;
    for (;;) {
      try {
        return await transport(hash);
      } catch (err) {
        if (!isRetryable(err) || performance.now() + delayMs > deadline) {
          const message = `fetching chunk ${toHex(hash)} failed: ${(err as Error).message}`;
          log(`fetch: ${message}`);
          if (err instanceof VatError && !isRetryable(err)) throw err;
          throw new TransientError(message, { cause: err });
        }
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        delayMs = Math.min(delayMs * 2, MAX_DELAY_MS);
      }
    }
  };
}
