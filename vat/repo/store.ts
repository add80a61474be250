/**
 * The one storage interface every repository transport implements: a flat namespace
 * of immutable-ish objects named by keys such as `repo.json`, `versions/3/manifest.json`
 * or `chunks/ab/ab12...`. Transports are siblings (`store_file.ts`, `store_http.ts`,
 * `store_s3.ts`, `store_memory.ts`); behaviour shared by all of them (the offline
 * mirror, `store_mirrored.ts`) is a wrapper implementing this same interface, never a
 * flag inside one. Retrying and ordering chunk reads is the fetch path's (`vat/fetch/`,
 * docs/CACHE.md), above `Repository`. Every transport passes `testStore()` in
 * `store_test_suite.ts`.
 *
 * @module
 */

import { IntegrityError, UsageError } from "../errors.ts";

/** What a transport knows of one stored object. */
export interface ObjectInfo {
  sizeBytes: number;
  /** When the object was last written (milliseconds since the epoch). */
  modifiedMs: number;
}

/** How a read may go (docs/SECURITY.md, "Limits on untrusted bytes"). */
export interface ReadOptions {
  /**
   * The most bytes the caller accepts (default: `readLimitOf(key)`). A larger object
   * fails with `IntegrityError` naming the key and the limit, and its transfer is
   * stopped there: a transport never holds more than the limit in memory.
   */
  maxBytes?: number;
  /**
   * The caller's giving up: when it aborts, a download in progress is cancelled and the
   * read rejects with the signal's reason.
   */
  signal?: AbortSignal;
  /**
   * Told the size of each piece of the object as it arrives, so that a caller can tell
   * a slow transfer from a silent one (`MirroredStore` times out only the latter). A
   * transport that reads in pieces calls it for each; one that reads at once need not
   * call it.
   */
  onProgress?: (bytes: number) => void;
}

/** Options of `Store.put`. */
export interface PutOptions {
  /**
   * The object need not be durable when put resolves, only by the next `create` on the
   * same store object (publish's chunks: one batched barrier instead of an fsync each).
   */
  deferSync?: boolean;
}

/** A repository's storage. */
export interface Store {
  /** Where the store is, for messages (a path or URL without credentials). */
  readonly location: string;

  /**
   * Reads a whole object, of at most `options.maxBytes` (else `readLimitOf(key)`)
   * bytes, enforced while it streams. Throws `NotFoundError` when it does not exist,
   * `IntegrityError` when it is larger than the limit, and `TransientError` for
   * failures a retry may cure.
   */
  get(key: string, options?: ReadOptions): Promise<Uint8Array>;

  /**
   * Reads `length` bytes at `offset` of an object. Returns fewer bytes only when the
   * object ends first, never more than `length`. Throws `NotFoundError` when the object
   * does not exist.
   */
  getRange(
    key: string,
    offset: number,
    length: number,
    options?: Pick<ReadOptions, "signal">,
  ): Promise<Uint8Array>;

  /**
   * Writes an object, replacing any existing one. When it resolves, the object is
   * durable and readers see either the old or the new content, never a mix. Idempotent.
   * Throws `PermanentError` when the store is read-only or full.
   *
   * With `options.deferSync`, the object's durability may be batched: it may become
   * visible and durable only at a later write of the same kind or at the next `create`
   * on this store object, which makes every such object durable (and visible) before
   * it creates anything, or fails. An object is never visible under its key before its
   * bytes are durable. Transports whose puts are durable when they resolve ignore it.
   */
  put(key: string, data: Uint8Array, options?: PutOptions): Promise<void>;

  /**
   * Creates an object only if no object has that key: the commit point of a version.
   * Returns true when this call created it, false when it already existed (then
   * nothing was written). Atomic: of two racing callers exactly one gets true. A
   * create repeated with the same bytes after its reply was lost (a retry) returns
   * true: an object committed by create carries a unique nonce, so equal bytes mean
   * the same writer. First, every object put on this store object with `deferSync` is
   * made durable (the durability barrier before a commit); if that fails, create throws
   * and creates nothing.
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

  /**
   * Optional: removes what killed writes left behind (a file store's temporary files)
   * that is older than `olderThanMs`, and says how many. Stores whose writes leave
   * nothing behind (S3, HTTP) do not have it.
   */
  sweepTemporary?(olderThanMs: number): Promise<number>;

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

/** The most bytes of `repo.json`, `latest` and a lease a reader accepts. */
export const SMALL_OBJECT_LIMIT_BYTES = 64 * 1024;
/** The most bytes of a version's manifest a reader accepts. */
export const MANIFEST_LIMIT_BYTES = 1024 * 1024;
/**
 * What a stored chunk object may add to its plaintext: the codec byte, and a sealed
 * object's codec byte, nonce and tag around it (docs/FORMAT.md, "Chunk objects").
 */
export const CHUNK_OVERHEAD_BYTES = 64;
/** The largest chunk any repository may have (`MAX_CHUNK_BYTES` of disk_index.ts). */
const _MAX_CHUNK_OBJECT_BYTES = 16 * 1024 * 1024 + CHUNK_OVERHEAD_BYTES;
/** Anything else (indexes, traces): callers that know better pass `maxBytes`. */
const _OTHER_LIMIT_BYTES = 512 * 1024 * 1024;

/**
 * The default limit of a read of `key`, by what the key names (its last segments, so a
 * data repository's `subscriptions/NAME/` keys get their object's limit): 64 KiB for
 * `repo.json`, `latest` and leases, 1 MiB for manifests, the largest chunk of any
 * repository for chunks, 512 MiB for the rest. `Repository` passes tighter ones (an
 * index's size from its manifest, the repository's own chunk size).
 */
export function readLimitOf(key: string): number {
  if (/(^|\/)(repo\.json|latest)$/.test(key) || /(^|\/)lease\/[^/]+$/.test(key)) {
    return SMALL_OBJECT_LIMIT_BYTES;
  }
  if (/(^|\/)versions\/\d+\/manifest\.json$/.test(key)) return MANIFEST_LIMIT_BYTES;
  if (key.startsWith("chunks/")) return _MAX_CHUNK_OBJECT_BYTES;
  return _OTHER_LIMIT_BYTES;
}

/** The limit of a read: the caller's, else the key's default. */
export function readLimit(key: string, options?: ReadOptions): number {
  const limit = options?.maxBytes ?? readLimitOf(key);
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new UsageError(`invalid read limit ${limit} for ${key}`);
  }
  return limit;
}

/** The error of an object larger than its read limit. */
export function tooLargeError(
  key: string,
  location: string,
  limitBytes: number,
  sizeBytes?: number,
): IntegrityError {
  const size = sizeBytes === undefined ? "more than" : `${sizeBytes} bytes, over`;
  return new IntegrityError(
    `${key} in ${location} is ${size} its limit of ${limitBytes} bytes; the repository ` +
      "is damaged or its server is hostile (nothing was kept)",
  );
}

/**
 * Reads a stream whole, refusing (and cancelling it) as soon as it passes `limitBytes`.
 * `onChunk` is called as each part arrives (a deadline renewal).
 */
export async function readStreamCapped(
  stream: ReadableStream<Uint8Array>,
  limitBytes: number,
  tooLarge: () => Error,
  sizeHint = 0,
  onChunk: (bytes: number) => void = () => {},
): Promise<Uint8Array> {
  let buffer = new Uint8Array(Math.min(Math.max(sizeHint, 0), limitBytes, 64 * 1024 * 1024));
  let filled = 0;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      onChunk(value.length);
      if (filled + value.length > limitBytes) throw tooLarge();
      if (filled + value.length > buffer.length) {
        const grown = new Uint8Array(
          Math.min(Math.max(buffer.length * 2, filled + value.length), limitBytes),
        );
        grown.set(buffer.subarray(0, filled));
        buffer = grown;
      }
      buffer.set(value, filled);
      filled += value.length;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return buffer.subarray(0, filled);
}

/** The first `limitBytes` of a stream (an error page's explanation); the rest is not read. */
export async function readStreamHead(
  stream: ReadableStream<Uint8Array>,
  limitBytes: number,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let filled = 0;
  const reader = stream.getReader();
  try {
    while (filled < limitBytes) {
      const { done, value } = await reader.read();
      if (done) break;
      const part = value.subarray(0, limitBytes - filled);
      parts.push(part);
      filled += part.length;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  const out = new Uint8Array(filled);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * The transport under any wrappers of the same interface (a wrapper exposes what it
 * wraps as `inner`): for callers that speak a transport's own protocol beyond `Store`,
 * such as a directory's login on `vat serve`.
 */
export function transportOf(store: Store): Store {
  let at: Store & { inner?: Store } = store;
  while (at.inner) at = at.inner;
  return at;
}
