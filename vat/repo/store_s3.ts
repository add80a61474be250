/**
 * The S3 transport: a `Store` over a bucket (and a key prefix in it) of any
 * S3-compatible object storage: AWS S3, Ceph RGW, MinIO, Garage. Requests are
 * SigV4-signed by `aws4fetch` and addressed path-style (`endpoint/bucket/key`), which
 * every S3-compatible server accepts.
 *
 * `create` is a PUT with `If-None-Match: *`: the server refuses it (412) when the key
 * exists, which makes it the atomic commit point of a version. Servers that ignore the
 * header (Garage, as of v1.2) would silently overwrite; `probeConditionalCreate` finds
 * them out before a repository is put there (see docs/FORMAT.md).
 *
 * Every failure is mapped once, in `S3Connection.fail` (`s3_connection.ts`): 404 is `NotFoundError`, 401 and
 * 403 are `PermanentError` (credentials refused), 429, 5xx, timeouts and network
 * failures are `TransientError` (a retrying wrapper may try again), anything else is a
 * `ProtocolError` carrying the S3 error code and message.
 *
 * @module
 */

import { S3Connection, type S3ConnectionOptions } from "./s3_connection.ts";
import { escapeXml, parseListPage, parseS3Error } from "./s3_xml.ts";
import {
  NotFoundError,
  PermanentError,
  ProtocolError,
  TransientError,
  UsageError,
} from "../errors.ts";
import {
  checkKey,
  checkPrefix,
  type ObjectInfo,
  readLimit,
  readLimitOf,
  type ReadOptions,
  type Store,
  tooLargeError,
} from "./store.ts";

/** Where an `S3Store` is and how to sign in. */
export interface S3StoreOptions extends S3ConnectionOptions {
  /** Key prefix in the bucket under which the store lives: "" or "a/b/" ("a/b" is taken as "a/b/"). */
  prefix: string;
  /** Keys asked for per ListObjectsV2 page, 1 to 1000 (default 1000). */
  listPageSize?: number;
}

/** Options that `parseS3Url` takes besides the URL; each overrides its environment variable. */
export interface S3UrlOptions {
  endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
}

const DEFAULT_REGION = "us-east-1";
/** The most of a listing page read (1000 keys of at most 1 KiB, plus the XML around). */
const _LIST_PAGE_LIMIT_BYTES = 16 * 1024 * 1024;
const MAX_LIST_PAGE = 1000;
/** How often `create` re-sends after a 409 ConditionalRequestConflict with no winner in sight. */
const CONFLICT_ATTEMPTS = 5;
const BUCKET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/;

/**
 * Turns `s3://bucket/prefix` plus options and the environment (`AWS_ENDPOINT_URL_S3` or
 * `AWS_ENDPOINT_URL`, `AWS_REGION` or `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`,
 * `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) into `S3StoreOptions`. Without an
 * endpoint it uses AWS's regional endpoint. Throws `UsageError` for a malformed URL or
 * missing credentials.
 */
export function parseS3Url(
  url: string,
  options: S3UrlOptions = {},
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): S3StoreOptions {
  const match = /^s3:\/\/([^/?#]+)(?:\/([^?#]*))?$/.exec(url);
  if (!match) {
    throw new UsageError(
      `"${url}" is not an S3 location: write it as s3://BUCKET or s3://BUCKET/PREFIX`,
    );
  }
  const [, bucket, rawPrefix = ""] = match;
  const region = options.region || env("AWS_REGION") || env("AWS_DEFAULT_REGION") ||
    DEFAULT_REGION;
  const endpoint = options.endpoint || env("AWS_ENDPOINT_URL_S3") || env("AWS_ENDPOINT_URL") ||
    `https://s3.${region}.amazonaws.com`;
  const accessKeyId = options.accessKeyId || env("AWS_ACCESS_KEY_ID");
  const secretAccessKey = options.secretAccessKey || env("AWS_SECRET_ACCESS_KEY");
  if (!accessKeyId || !secretAccessKey) {
    const missing = [
      accessKeyId ? null : "AWS_ACCESS_KEY_ID",
      secretAccessKey ? null : "AWS_SECRET_ACCESS_KEY",
    ].filter(Boolean).join(" and ");
    throw new UsageError(
      `no S3 credentials for ${url}: set ${missing} in the environment ` +
        `(and AWS_ENDPOINT_URL for a server other than AWS S3)`,
    );
  }
  const parsed: S3StoreOptions = {
    bucket,
    prefix: rawPrefix,
    endpoint,
    region,
    accessKeyId,
    secretAccessKey,
  };
  const sessionToken = options.sessionToken || env("AWS_SESSION_TOKEN");
  if (sessionToken) parsed.sessionToken = sessionToken;
  // Validate now, so that a bad URL is reported as the user typed it.
  _checkOptions(parsed, url);
  return parsed;
}

/** A `Store` over a bucket of S3-compatible object storage. */
export class S3Store implements Store {
  readonly location: string;
  readonly canList = true;
  readonly #s3: S3Connection;
  /** "" or a prefix ending with "/", prepended to every key. */
  readonly #prefix: string;
  readonly #listPageSize: number;

  constructor(options: S3StoreOptions) {
    const { prefix } = _checkOptions(options, "S3 store options");
    this.#prefix = prefix;
    this.#s3 = new S3Connection(options);
    this.location = `s3://${options.bucket}/${prefix} at ${this.#s3.endpoint}`;
    this.#listPageSize = options.listPageSize ?? MAX_LIST_PAGE;
  }

  #path(key: string): string {
    return this.#s3.objectPath(this.#prefix + checkKey(key));
  }

  async get(key: string, options?: ReadOptions): Promise<Uint8Array> {
    const path = this.#path(key);
    const capBytes = readLimit(key, options);
    const res = await this.#s3.request("GET", path, {
      what: `read ${key}`,
      signal: options?.signal,
    });
    if (res.status === 404) throw await this.#notFound(res, key);
    if (res.status !== 200) throw await this.#s3.fail(res, `read ${key}`);
    const body = await this.#s3.body(
      res,
      `read ${key}`,
      capBytes,
      (size) => tooLargeError(key, this.location, capBytes, size),
      options?.onProgress,
    );
    _checkLength(res, body, `${key} in ${this.location}`);
    return body;
  }

  async getRange(
    key: string,
    offset: number,
    length: number,
    options?: Pick<ReadOptions, "signal">,
  ): Promise<Uint8Array> {
    const path = this.#path(key);
    if (
      !Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0
    ) {
      throw new UsageError(`invalid range of ${key}: offset ${offset}, length ${length}`);
    }
    if (length === 0) {
      // An empty Range header is invalid HTTP; still report a missing object.
      if (await this.stat(key) === null) throw new NotFoundError(this.#missing(key));
      return new Uint8Array(0);
    }
    const what = `read ${key} at ${offset}+${length}`;
    const res = await this.#s3.request("GET", path, {
      headers: { Range: `bytes=${offset}-${offset + length - 1}` },
      what,
      signal: options?.signal,
    });
    if (res.status === 404) throw await this.#notFound(res, key);
    // The range starts at or past the end (an empty object included): nothing to read.
    if (res.status === 416) {
      await res.body?.cancel();
      return new Uint8Array(0);
    }
    if (res.status === 200) {
      // The server ignored the Range header and sent the whole object.
      const capBytes = readLimitOf(key);
      const whole = await this.#s3.body(
        res,
        what,
        capBytes,
        (size) => tooLargeError(key, this.location, capBytes, size),
      );
      _checkLength(res, whole, `${key} in ${this.location}`);
      return whole.slice(offset, offset + length);
    }
    if (res.status !== 206) throw await this.#s3.fail(res, what);
    const part = await this.#s3.body(res, what, length, () =>
      new ProtocolError(
        `S3 at ${this.#s3.endpoint} sent more than the ${length} bytes asked of ${key}`,
      ));
    const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get("Content-Range") ?? "");
    if (
      !range || Number(range[1]) !== offset || Number(range[2]) - offset + 1 !== part.length ||
      part.length > length
    ) {
      throw new ProtocolError(
        `S3 at ${this.#s3.endpoint} answered a read of ${key} at ${offset}+${length} with ` +
          `Content-Range "${res.headers.get("Content-Range")}" and ${part.length} bytes`,
      );
    }
    return part;
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const path = this.#path(key);
    const res = await this.#s3.request("PUT", path, {
      body: data,
      headers: await _putHeaders(data),
      what: `write ${key}`,
    });
    if (!res.ok) throw await this.#s3.fail(res, `write ${key}`);
    await res.body?.cancel();
  }

  async create(key: string, data: Uint8Array): Promise<boolean> {
    const path = this.#path(key);
    const what = `create ${key}`;
    const headers = { ...await _putHeaders(data), "If-None-Match": "*" };
    for (let attempt = 1;; attempt++) {
      const res = await this.#s3.request("PUT", path, { body: data, headers, what });
      if (res.ok) {
        await res.body?.cancel();
        return true;
      }
      if (res.status !== 412 && res.status !== 409) throw await this.#s3.fail(res, what);
      await res.body?.cancel();
      // 412: the key exists. 409 ConditionalRequestConflict (AWS): another write of the
      // key was in flight; whoever finished first won. Either way, look at what is there.
      const existing = await this.#getOrNull(key);
      if (existing !== null) {
        // Our own earlier attempt, whose reply was lost and which a retrying wrapper
        // repeated, left exactly our bytes (a committed object carries a unique nonce).
        return _sameBytes(existing, data);
      }
      // 409 and still nothing there: the other writer failed or the key was deleted.
      if (attempt >= CONFLICT_ATTEMPTS) {
        throw new TransientError(
          `could not create ${key} in ${this.location}: ${attempt} conditional writes ` +
            `conflicted with other writes (HTTP ${res.status}); try again`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20 * 2 ** attempt));
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const path = this.#path(key);
    const res = await this.#s3.request("HEAD", path, { what: `look up ${key}` });
    await res.body?.cancel();
    if (res.status === 404) return null;
    if (res.status !== 200) throw await this.#s3.fail(res, `look up ${key}`);
    const sizeBytes = Number(res.headers.get("Content-Length") ?? NaN);
    const modifiedMs = Date.parse(res.headers.get("Last-Modified") ?? "");
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || Number.isNaN(modifiedMs)) {
      throw new ProtocolError(
        `S3 at ${this.#s3.endpoint} described ${key} without a valid Content-Length ` +
          `("${res.headers.get("Content-Length")}") or Last-Modified ` +
          `("${res.headers.get("Last-Modified")}")`,
      );
    }
    return { sizeBytes, modifiedMs };
  }

  async *list(prefix: string): AsyncIterable<string> {
    checkPrefix(prefix);
    const full = this.#prefix + prefix;
    const what = `list ${prefix || "the store"}`;
    let token: string | undefined;
    do {
      const query: Record<string, string> = {
        "list-type": "2",
        "max-keys": String(this.#listPageSize),
        prefix: full,
      };
      if (token !== undefined) query["continuation-token"] = token;
      const res = await this.#s3.request("GET", this.#s3.bucketPath(), { query, what });
      if (res.status !== 200) throw await this.#s3.fail(res, what);
      const xml = new TextDecoder().decode(
        await this.#s3.body(
          res,
          what,
          _LIST_PAGE_LIMIT_BYTES,
          () => new ProtocolError(`S3 at ${this.#s3.endpoint} sent a listing page over 16 MiB`),
        ),
      );
      const page = parseListPage(xml, this.#s3.endpoint);
      for (const key of page.keys) {
        if (!key.startsWith(full)) {
          throw new ProtocolError(
            `S3 at ${this.#s3.endpoint} listed "${key}" when asked for keys under "${full}"`,
          );
        }
        yield key.slice(this.#prefix.length);
      }
      if (page.nextToken !== undefined && page.nextToken === token) {
        throw new ProtocolError(
          `S3 at ${this.#s3.endpoint} repeated the continuation token while listing ${full}`,
        );
      }
      token = page.nextToken;
    } while (token !== undefined);
  }

  async delete(key: string): Promise<void> {
    const path = this.#path(key);
    const res = await this.#s3.request("DELETE", path, { what: `delete ${key}` });
    if (res.status === 200 || res.status === 204) {
      await res.body?.cancel();
      return;
    }
    if (res.status === 404) {
      // A missing object is deleted already; a missing bucket is a misconfiguration.
      const { code } = parseS3Error(await this.#s3.text(res));
      if (code === "NoSuchBucket") throw this.#s3.bucketMissing();
      return;
    }
    throw await this.#s3.fail(res, `delete ${key}`);
  }

  close(): Promise<void> {
    this.#s3.close();
    return Promise.resolve();
  }

  async #getOrNull(key: string): Promise<Uint8Array | null> {
    try {
      return await this.get(key);
    } catch (err) {
      if (err instanceof NotFoundError) return null;
      throw err;
    }
  }

  #missing(key: string): string {
    return `${key} does not exist in ${this.location}`;
  }

  /** The error of a 404: the object, or the whole bucket, is missing. */
  async #notFound(res: Response, key: string): Promise<NotFoundError> {
    const { code } = parseS3Error(await this.#s3.text(res));
    return code === "NoSuchBucket"
      ? this.#s3.bucketMissing()
      : new NotFoundError(this.#missing(key));
  }
}

/**
 * Creates the bucket of `options` unless it exists. Returns true when it was created.
 * Throws `PermanentError` when the name is taken by another account or the credentials
 * may not create buckets. Used by `vat repo init`; `S3Store` never creates buckets.
 */
export async function ensureBucket(options: S3StoreOptions): Promise<boolean> {
  _checkOptions(options, "S3 store options");
  const s3 = new S3Connection(options);
  try {
    const path = s3.bucketPath();
    const head = await s3.request("HEAD", path, { what: "look up the bucket" });
    await head.body?.cancel();
    if (head.status === 200) return false;
    if (head.status !== 404) throw await s3.fail(head, "look up the bucket");
    // AWS wants the region named unless it is us-east-1; other servers accept it too.
    const body = options.region === DEFAULT_REGION ? undefined : new TextEncoder().encode(
      `<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
        `<LocationConstraint>${escapeXml(options.region)}</LocationConstraint>` +
        `</CreateBucketConfiguration>`,
    );
    const res = await s3.request("PUT", path, { body, what: "create the bucket" });
    if (res.status === 200) {
      await res.body?.cancel();
      return true;
    }
    const text = await s3.text(res);
    const { code } = parseS3Error(text);
    // Another `vat repo init` created it between our HEAD and PUT.
    if (res.status === 409 && code === "BucketAlreadyOwnedByYou") return false;
    if (res.status === 409 && code === "BucketAlreadyExists") {
      throw new PermanentError(
        `bucket "${options.bucket}" at ${s3.endpoint} belongs to another account: ` +
          `choose another bucket name`,
      );
    }
    throw s3.failWith(res.status, text, "create the bucket");
  } finally {
    s3.close();
  }
}

/**
 * Checks that the server refuses a second `create` of one key, i.e. honours
 * `If-None-Match: *` (Garage, for one, ignores it and overwrites). Writes and removes a
 * small object under `probe/`. Throws `PermanentError` when the server overwrote it.
 */
export async function probeConditionalCreate(store: Store): Promise<void> {
  const key = `probe/create-${crypto.randomUUID()}`;
  try {
    const first = await store.create(key, new TextEncoder().encode("first"));
    const second = await store.create(key, new TextEncoder().encode("second"));
    if (!first || second) {
      throw new PermanentError(
        `${store.location} does not honour "If-None-Match: *" on PUT (a second create of ` +
          `${key} ${second ? "overwrote the first" : "failed"}), so two publishers could ` +
          `both commit one version: use a server that does (AWS S3, Ceph RGW, MinIO)`,
      );
    }
  } finally {
    await store.delete(key);
  }
}

/** Validates options and returns the prefix in its normal form ("" or ending with "/"). */
function _checkOptions(options: S3StoreOptions, source: string): { prefix: string } {
  if (!BUCKET_NAME.test(options.bucket)) {
    throw new UsageError(
      `invalid S3 bucket name "${options.bucket}" in ${source}: use 3 to 255 letters, ` +
        `digits, ".", "-" or "_"`,
    );
  }
  const trimmed = options.prefix.replace(/^\/+|\/+$/g, "");
  if (trimmed !== "") checkKey(trimmed);
  let endpoint: URL;
  try {
    endpoint = new URL(options.endpoint);
  } catch {
    throw new UsageError(
      `invalid S3 endpoint "${options.endpoint}" in ${source}: give a URL such as ` +
        `https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:7480`,
    );
  }
  if (endpoint.protocol !== "http:" && endpoint.protocol !== "https:") {
    throw new UsageError(`S3 endpoint "${options.endpoint}" in ${source} must be http(s)`);
  }
  if (endpoint.username || endpoint.password || endpoint.search || endpoint.hash) {
    throw new UsageError(
      `S3 endpoint in ${source} must be a plain URL without credentials or query: ` +
        `give keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`,
    );
  }
  const pageSize = options.listPageSize ?? MAX_LIST_PAGE;
  if (!Number.isSafeInteger(pageSize) || pageSize < 1 || pageSize > MAX_LIST_PAGE) {
    throw new UsageError(`S3 list page size ${pageSize} is not between 1 and ${MAX_LIST_PAGE}`);
  }
  return { prefix: trimmed === "" ? "" : `${trimmed}/` };
}

/** Headers of an object upload: the payload's SHA-256, which the server verifies. */
async function _putHeaders(data: Uint8Array): Promise<Record<string, string>> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource));
  return {
    "Content-Type": "application/octet-stream",
    "X-Amz-Content-Sha256": Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
  };
}

/** Fails when a whole-object answer is not as long as it said it was. */
function _checkLength(res: Response, body: Uint8Array, what: string): void {
  const declared = res.headers.get("Content-Length");
  if (declared !== null && Number(declared) !== body.length) {
    throw new ProtocolError(
      `S3 sent ${body.length} bytes of ${what} but announced ${declared}`,
    );
  }
}

function _sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** URI-encodes like SigV4 does: everything but A-Z a-z 0-9 - _ . ~ */
