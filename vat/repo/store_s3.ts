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
 * Every failure is mapped once, in `_S3Connection.fail`: 404 is `NotFoundError`, 401 and
 * 403 are `PermanentError` (credentials refused), 429, 5xx, timeouts and network
 * failures are `TransientError` (a retrying wrapper may try again), anything else is a
 * `ProtocolError` carrying the S3 error code and message.
 *
 * @module
 */

import { AwsClient } from "aws4fetch";
import {
  NotFoundError,
  PermanentError,
  ProtocolError,
  TransientError,
  UsageError,
} from "../errors.ts";
import { checkKey, checkPrefix, type ObjectInfo, parseRetryAfter, type Store } from "./store.ts";

/** Where an `S3Store` is and how to sign in. */
export interface S3StoreOptions {
  bucket: string;
  /** Key prefix in the bucket under which the store lives: "" or "a/b/" ("a/b" is taken as "a/b/"). */
  prefix: string;
  /** Base URL of the S3 API, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:7480`. */
  endpoint: string;
  /** The SigV4 signing region (`us-east-1` for most non-AWS servers). */
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** Keys asked for per ListObjectsV2 page, 1 to 1000 (default 1000). */
  listPageSize?: number;
  /** Time limit of one request including its body, in milliseconds (default 120 s). */
  timeoutMs?: number;
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
const DEFAULT_TIMEOUT_MS = 120_000;
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
  readonly #s3: _S3Connection;
  /** "" or a prefix ending with "/", prepended to every key. */
  readonly #prefix: string;
  readonly #listPageSize: number;

  constructor(options: S3StoreOptions) {
    const { prefix } = _checkOptions(options, "S3 store options");
    this.#prefix = prefix;
    this.#s3 = new _S3Connection(options);
    this.location = `s3://${options.bucket}/${prefix} at ${this.#s3.endpoint}`;
    this.#listPageSize = options.listPageSize ?? MAX_LIST_PAGE;
  }

  #path(key: string): string {
    return this.#s3.objectPath(this.#prefix + checkKey(key));
  }

  async get(key: string): Promise<Uint8Array> {
    const path = this.#path(key);
    const res = await this.#s3.request("GET", path, { what: `read ${key}` });
    if (res.status === 404) throw await this.#notFound(res, key);
    if (res.status !== 200) throw await this.#s3.fail(res, `read ${key}`);
    const body = await this.#s3.body(res, `read ${key}`);
    _checkLength(res, body, `${key} in ${this.location}`);
    return body;
  }

  async getRange(key: string, offset: number, length: number): Promise<Uint8Array> {
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
    });
    if (res.status === 404) throw await this.#notFound(res, key);
    // The range starts at or past the end (an empty object included): nothing to read.
    if (res.status === 416) {
      await res.body?.cancel();
      return new Uint8Array(0);
    }
    if (res.status === 200) {
      // The server ignored the Range header and sent the whole object.
      const whole = await this.#s3.body(res, what);
      _checkLength(res, whole, `${key} in ${this.location}`);
      return whole.slice(offset, offset + length);
    }
    if (res.status !== 206) throw await this.#s3.fail(res, what);
    const part = await this.#s3.body(res, what);
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
      const xml = new TextDecoder().decode(await this.#s3.body(res, what));
      const page = _parseListPage(xml, this.#s3.endpoint);
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
      const { code } = _parseError(await this.#s3.text(res));
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
    const { code } = _parseError(await this.#s3.text(res));
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
  const s3 = new _S3Connection(options);
  try {
    const path = s3.bucketPath();
    const head = await s3.request("HEAD", path, { what: "look up the bucket" });
    await head.body?.cancel();
    if (head.status === 200) return false;
    if (head.status !== 404) throw await s3.fail(head, "look up the bucket");
    // AWS wants the region named unless it is us-east-1; other servers accept it too.
    const body = options.region === DEFAULT_REGION ? undefined : new TextEncoder().encode(
      `<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
        `<LocationConstraint>${_escapeXml(options.region)}</LocationConstraint>` +
        `</CreateBucketConfiguration>`,
    );
    const res = await s3.request("PUT", path, { body, what: "create the bucket" });
    if (res.status === 200) {
      await res.body?.cancel();
      return true;
    }
    const text = await s3.text(res);
    const { code } = _parseError(text);
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

/** Signing, sending and error mapping for one endpoint and bucket. */
class _S3Connection {
  readonly endpoint: string;
  readonly bucket: string;
  readonly #aws: AwsClient;
  readonly #http: Deno.HttpClient;
  readonly #timeoutMs: number;

  constructor(options: S3StoreOptions) {
    this.endpoint = options.endpoint.replace(/\/+$/, "");
    this.bucket = options.bucket;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    // retries: 0, because retrying is the job of a wrapper Store, not of the transport.
    this.#aws = new AwsClient({
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      sessionToken: options.sessionToken,
      service: "s3",
      region: options.region,
      retries: 0,
    });
    this.#http = Deno.createHttpClient({});
  }

  /** The URL path of the bucket. */
  bucketPath(): string {
    return `/${_encodeRfc3986(this.bucket)}`;
  }

  /** The URL path of an object of the bucket (its full key, prefix included). */
  objectPath(key: string): string {
    return `${this.bucketPath()}/${key.split("/").map(_encodeRfc3986).join("/")}`;
  }

  bucketMissing(): NotFoundError {
    return new NotFoundError(
      `bucket "${this.bucket}" does not exist at ${this.endpoint}: create it ` +
        `(vat repo init) or check the bucket name`,
    );
  }

  async request(
    method: string,
    path: string,
    init: {
      query?: Record<string, string>;
      headers?: Record<string, string>;
      body?: Uint8Array;
      what: string;
    },
  ): Promise<Response> {
    const query = Object.entries(init.query ?? {})
      .map(([name, value]) => `${_encodeRfc3986(name)}=${_encodeRfc3986(value)}`).join("&");
    const url = `${this.endpoint}${path}${query ? `?${query}` : ""}`;
    const headers: Record<string, string> = { ...init.headers };
    // A transparently compressed answer would break ranges and length checks.
    if (method === "GET") headers["Accept-Encoding"] = "identity";
    try {
      const signed = await this.#aws.sign(url, {
        method,
        headers,
        body: init.body as BodyInit | undefined,
      });
      return await fetch(signed, {
        client: this.#http,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (err) {
      throw this.#networkError(err, init.what);
    }
  }

  /** Reads a whole answer; a connection lost on the way is transient. */
  async body(res: Response, what: string): Promise<Uint8Array> {
    try {
      return new Uint8Array(await res.arrayBuffer());
    } catch (err) {
      throw this.#networkError(err, what);
    }
  }

  /** Reads an (error) answer as text, or "" when it cannot be read. */
  async text(res: Response): Promise<string> {
    try {
      return await res.text();
    } catch {
      return "";
    }
  }

  /** The error for an unexpected answer. */
  async fail(res: Response, what: string): Promise<Error> {
    const retryAfterMs = parseRetryAfter(res.headers.get("Retry-After"));
    return this.failWith(res.status, await this.text(res), what, retryAfterMs);
  }

  failWith(status: number, body: string, what: string, retryAfterMs?: number): Error {
    const { code, message } = _parseError(body);
    const detail = [code, message].filter(Boolean).join(": ") || `HTTP ${status}`;
    const where = `bucket "${this.bucket}" at ${this.endpoint}`;
    if (code === "RequestTimeTooSkewed") {
      return new PermanentError(
        `S3 refused to ${what} in ${where}: this machine's clock is more than 15 minutes ` +
          `off (${detail}); set the system time`,
      );
    }
    if (status === 401 || status === 403) {
      return new PermanentError(
        `S3 refused the credentials for ${where} when trying to ${what} (${detail}): check ` +
          `AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and that this key may use the bucket`,
      );
    }
    if (status === 404) {
      return new NotFoundError(`S3 could not ${what} in ${where}: not found (${detail})`);
    }
    if (status === 429 || status >= 500) {
      return new TransientError(
        `S3 failed to ${what} in ${where} (HTTP ${status}, ${detail}): try again later`,
        { status, retryAfterMs },
      );
    }
    return new ProtocolError(
      `S3 answered the request to ${what} in ${where} with HTTP ${status} (${detail})`,
    );
  }

  close(): void {
    this.#http.close();
  }

  #networkError(err: unknown, what: string): Error {
    if (err instanceof DOMException && err.name === "TimeoutError") {
      return new TransientError(
        `S3 at ${this.endpoint} did not answer within ${this.#timeoutMs / 1000} s ` +
          `when trying to ${what} in bucket "${this.bucket}": check the network, then try again`,
        { cause: err },
      );
    }
    if (err instanceof TypeError || err instanceof Deno.errors.ConnectionRefused) {
      return new TransientError(
        `cannot reach S3 at ${this.endpoint} to ${what} in bucket "${this.bucket}" ` +
          `(${err.message}): check AWS_ENDPOINT_URL and the network, then try again`,
        { cause: err },
      );
    }
    return err instanceof Error ? err : new Error(String(err));
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
function _encodeRfc3986(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function _escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** One page of a ListObjectsV2 answer (the format: AWS's ListObjectsV2 reference). */
function _parseListPage(xml: string, endpoint: string): { keys: string[]; nextToken?: string } {
  if (!/<ListBucketResult[\s>]/.test(xml)) {
    throw new ProtocolError(
      `S3 at ${endpoint} answered a listing with something other than a ListBucketResult: ` +
        `"${xml.slice(0, 200)}"`,
    );
  }
  const keys: string[] = [];
  // Keys live in <Contents> elements; a key's text cannot contain "<", so the first
  // closing tag after an opening one is its own.
  for (const contents of _elements(xml, "Contents")) {
    const key = _elements(contents, "Key")[0];
    if (key === undefined) {
      throw new ProtocolError(`S3 at ${endpoint} listed an object without a <Key>`);
    }
    keys.push(_decodeXmlText(key, endpoint));
  }
  const truncated = _elements(xml, "IsTruncated")[0]?.trim() === "true";
  if (!truncated) return { keys };
  const token = _elements(xml, "NextContinuationToken")[0];
  if (!token) {
    throw new ProtocolError(
      `S3 at ${endpoint} said a listing goes on but gave no NextContinuationToken`,
    );
  }
  return { keys, nextToken: _decodeXmlText(token, endpoint) };
}

/** The Code and Message of an S3 error document, when there is one. */
function _parseError(xml: string): { code?: string; message?: string } {
  const decode = (raw: string | undefined) => {
    if (raw === undefined) return undefined;
    try {
      return _decodeXmlText(raw, "").trim() || undefined;
    } catch {
      return raw.trim() || undefined;
    }
  };
  return { code: decode(_elements(xml, "Code")[0]), message: decode(_elements(xml, "Message")[0]) };
}

/** The raw contents of every `<name>` element (with or without attributes) in `xml`. */
function _elements(xml: string, name: string): string[] {
  const found: string[] = [];
  const open = new RegExp(`<${name}(?:\\s[^>]*)?(/)?>`, "g");
  const close = `</${name}>`;
  for (let m = open.exec(xml); m !== null; m = open.exec(xml)) {
    if (m[1]) {
      found.push(""); // <name/>
      continue;
    }
    const start = m.index + m[0].length;
    const end = xml.indexOf(close, start);
    if (end < 0) break;
    found.push(xml.slice(start, end));
    open.lastIndex = end + close.length;
  }
  return found;
}

const XML_ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};

/** Decodes XML character data: the five named entities, numeric references, CDATA. */
function _decodeXmlText(raw: string, endpoint: string): string {
  return raw.replace(
    /<!\[CDATA\[([\s\S]*?)\]\]>|&(#x[0-9A-Fa-f]+|#[0-9]+|[A-Za-z]+);|[&<]/g,
    (whole, cdata: string | undefined, entity: string | undefined) => {
      if (cdata !== undefined) return cdata;
      if (entity !== undefined) {
        if (entity in XML_ENTITIES) return XML_ENTITIES[entity];
        if (entity.startsWith("#")) {
          const code = entity[1] === "x"
            ? parseInt(entity.slice(2), 16)
            : parseInt(entity.slice(1), 10);
          if (code > 0 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff)) {
            return String.fromCodePoint(code);
          }
        }
      }
      throw new ProtocolError(`S3 at ${endpoint} sent malformed XML text near "${whole}"`);
    },
  );
}
