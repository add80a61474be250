/**
 * The one storage interface every repository transport implements: a flat namespace
 * of immutable-ish objects named by keys such as `repo.json`, `versions/3/manifest.json`
 * or `chunks/ab/ab12...`. Transports are siblings (`store_file.ts`, `store_http.ts`,
 * `store_s3.ts`, `store_memory.ts`); behaviour shared by all of them (retries, rate
 * limits) is a wrapper implementing this same interface, never a flag inside one.
 * Every transport passes `testStore()` in `store_test_suite.ts`.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/** What a transport knows of one stored object. */
export interface ObjectInfo {
  sizeBytes: number;
  /** When the object was last written (milliseconds since the epoch). */
  modifiedMs: number;
}

/** A repository's storage. */
export interface Store {
  /** Where the store is, for messages (a path or URL without credentials). */
  readonly location: string;

  /**
   * Reads a whole object. Throws `NotFoundError` when it does not exist, and
   * `TransientError` for failures a retry may cure.
   */
  get(key: string): Promise<Uint8Array>;

  /**
   * Reads `length` bytes at `offset` of an object. Returns fewer bytes only when the
   * object ends first. Throws `NotFoundError` when the object does not exist.
   */
  getRange(key: string, offset: number, length: number): Promise<Uint8Array>;

  /**
   * Writes an object, replacing any existing one. When it resolves, the object is
   * durable and readers see either the old or the new content, never a mix. Idempotent.
   * Throws `PermanentError` when the store is read-only or full.
   */
  put(key: string, data: Uint8Array): Promise<void>;

  /**
   * Creates an object only if no object has that key: the commit point of a version.
   * Returns true when this call created it, false when it already existed (then
   * nothing was written). Atomic: of two racing callers exactly one gets true. A
   * create repeated with the same bytes after its reply was lost (a retry) returns
   * true: an object committed by create carries a unique nonce, so equal bytes mean
   * the same writer.
   */
  create(key: string, data: Uint8Array): Promise<boolean>;

  /** The object's size, or null when it does not exist. */
  stat(key: string): Promise<ObjectInfo | null>;

  /**
   * Lists every key that starts with `prefix` (which ends with "/"), in no particular
   * order, streaming. Throws `PermanentError` on transports that cannot list (a static
   * HTTP server); callers needing only versions must not depend on it (see
   * `Repository.listVersions`).
   */
  list(prefix: string): AsyncIterable<string>;

  /** Whether `list` works on this transport. */
  readonly canList: boolean;

  /** Deletes an object. Idempotent: deleting a missing object succeeds. */
  delete(key: string): Promise<void>;

  /** Releases connections and handles. */
  close(): Promise<void>;
}

const KEY_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/**
 * Checks that a key is a relative path of plain segments (no "..", no leading "/",
 * no empty segment, no characters outside [A-Za-z0-9._-]), so that no transport can be
 * steered outside its root. Every transport calls it on every key it is given.
 */
export function checkKey(key: string): string {
  if (key.length === 0 || key.length > 512) {
    throw new UsageError(`invalid object key "${key}": empty or too long`);
  }
  for (const segment of key.split("/")) {
    if (!KEY_SEGMENT.test(segment)) {
      throw new UsageError(
        `invalid object key "${key}": segment "${segment}" is not a plain name`,
      );
    }
  }
  return key;
}

/** Checks a listing prefix: empty, or a valid key followed by "/". */
export function checkPrefix(prefix: string): string {
  if (prefix === "") return prefix;
  if (!prefix.endsWith("/")) {
    throw new UsageError(`invalid listing prefix "${prefix}": must end with "/"`);
  }
  checkKey(prefix.slice(0, -1));
  return prefix;
}

/** The longest `Retry-After` taken at its word (a server asking for more is capped). */
const MAX_RETRY_AFTER_MS = 3600_000;

/**
 * The wait a `Retry-After` header asks for, in milliseconds: delta-seconds or an
 * HTTP date (RFC 9110, 10.2.3). Undefined when absent or malformed; at most an hour.
 */
export function parseRetryAfter(header: string | null, nowMs = Date.now()): number | undefined {
  if (header === null) return undefined;
  const text = header.trim();
  let ms: number;
  if (/^\d+$/.test(text)) ms = Number(text) * 1000;
  else {
    const at = Date.parse(text);
    if (Number.isNaN(at)) return undefined;
    ms = Math.max(0, at - nowMs);
  }
  return Math.min(ms, MAX_RETRY_AFTER_MS);
}
