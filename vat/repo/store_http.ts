/**
 * The HTTP(S) transport, in two modes behind one class (the wire protocol is in
 * docs/HTTP.md):
 *
 * - **static**: read-only from any server that honours single byte ranges (nginx, a
 *   CDN, object storage's public URLs): GET, GET with `Range`, HEAD. Such a server
 *   cannot list, so `canList` is false, and it cannot be written.
 * - **vat serve**: the same reads, plus PUT, create (PUT with `If-None-Match: *`),
 *   DELETE and paginated listings, every write signed with the publisher's key.
 *
 * `openHttpStore` tells them apart once, when the store is opened, by asking the URL
 * for its capabilities: only `vat serve` answers with a `Vat-Serve` header.
 *
 * Every request has a deadline that is renewed while bytes flow (a response must start
 * within `timeoutMs`, and a body may not stall for longer), so a slow but live link
 * finishes a large object while a dead one fails fast with a `TransientError`.
 *
 * @module
 */

import type { SigningKey } from "../auth/signing_key.ts";
import {
  IntegrityError,
  NotFoundError,
  PermanentError,
  ProtocolError,
  TransientError,
  UsageError,
  type VatError,
} from "../errors.ts";
import { redactLocation } from "./open_store.ts";
import {
  Deadline,
  discardBody,
  isDirectoryRedirect,
  networkError,
  parseContentRange,
  statusError,
  uploadAllowanceMs,
} from "./http_exchange.ts";
import { CONTENT_SHA256_HEADER, sha256Hex, signRequest } from "../auth/request_signature.ts";
import {
  checkKey,
  checkPrefix,
  type ObjectInfo,
  readLimit,
  type ReadOptions,
  type Store,
  tooLargeError,
} from "./store.ts";

/** Options of an `HttpStore`. */
export interface HttpStoreOptions {
  /** The publisher's key: writes to `vat serve` are signed with it. */
  signingKey?: SigningKey;
  /**
   * How long a response may take to start, and a body may stall (default 30 s). An
   * upload gets this plus the time its body needs at 8 KiB/s (`uploadAllowanceMs`).
   */
  timeoutMs?: number;
  /** Keys asked for per listing request (default 10 000, at most 100 000). */
  listPageSize?: number;
}

/** Which kind of server an `HttpStore` talks to. */
export type HttpServerKind = "static" | "vat-serve";

/** The newest `vat serve` protocol this client speaks. */
const PROTOCOL_VERSION = 2;
const DEFAULT_TIMEOUT_MS = 30_000;
/** The largest listing page vat serve gives. */
const MAX_LIST_PAGE = 100_000;
/** The most a body is given room for before its bytes arrive (it grows beyond). */
const MAX_PREALLOCATE_BYTES = 64 * 1024 * 1024;

/**
 * Opens an HTTP(S) repository store at `url` (a directory URL; a missing final "/" is
 * added), asking once whether `vat serve` is behind it. Throws `TransientError` when
 * the server cannot be reached.
 */
export async function openHttpStore(
  url: string,
  options: HttpStoreOptions = {},
): Promise<HttpStore> {
  const probe = new HttpStore(url, "static", options);
  let kind: HttpServerKind;
  try {
    kind = await probe.probeServerKind();
  } finally {
    await probe.close();
  }
  return new HttpStore(url, kind, options);
}

/** A `Store` over HTTP(S): read-only from a static server, read-write on `vat serve`. */
export class HttpStore implements Store {
  readonly location: string;
  readonly canList: boolean;
  readonly serverKind: HttpServerKind;
  /** The base URL's origin and path (ends with "/"), without credentials or query. */
  readonly #base: string;
  /** The base URL's query (e.g. a CDN token), kept on every request. */
  readonly #query: URLSearchParams;
  /** Basic credentials taken out of the URL, sent with reads. */
  readonly #basicAuth: string | null;
  readonly #signingKey: SigningKey | undefined;
  readonly #timeoutMs: number;
  readonly #listPageSize: number;
  readonly #client: Deno.HttpClient;
  #closed = false;

  /**
   * Use `openHttpStore`, which finds out `serverKind`; this is for callers that
   * already know it.
   */
  constructor(url: string, serverKind: HttpServerKind, options: HttpStoreOptions = {}) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch (err) {
      throw new UsageError(`${redactLocation(url)} is not a URL`, { cause: err });
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new UsageError(`${redactLocation(url)} is not an http:// or https:// URL`);
    }
    this.#basicAuth = parsed.username || parsed.password
      ? "Basic " + btoa(
        `${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`,
      )
      : null;
    const path = parsed.pathname.endsWith("/") ? parsed.pathname : `${parsed.pathname}/`;
    this.#base = `${parsed.origin}${path}`;
    this.#query = parsed.searchParams;
    this.location = this.#base;
    this.serverKind = serverKind;
    this.canList = serverKind === "vat-serve";
    this.#signingKey = options.signingKey;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#listPageSize = options.listPageSize ?? 10_000;
    if (
      !Number.isInteger(this.#listPageSize) || this.#listPageSize < 1 ||
      this.#listPageSize > MAX_LIST_PAGE
    ) {
      throw new UsageError(`listPageSize must be an integer from 1 to ${MAX_LIST_PAGE}`);
    }
    // One client per store: its pool keeps connections alive between requests, and
    // close() releases them.
    this.#client = Deno.createHttpClient({});
  }

  /** Asks the server whether it is `vat serve` (docs/HTTP.md, "Capabilities"). */
  async probeServerKind(): Promise<HttpServerKind> {
    const url = this.#url("", { capabilities: "" });
    const { response, deadline } = await this.#send("GET", url, "");
    try {
      const version = response.headers.get("vat-serve");
      if (version === null) return "static";
      if (!/^\d+$/.test(version) || Number(version) > PROTOCOL_VERSION) {
        throw new ProtocolError(
          `${this.location} is a vat serve of protocol ${version}, newer than this vat ` +
            `speaks (${PROTOCOL_VERSION}); update vat`,
        );
      }
      return "vat-serve";
    } finally {
      await discardBody(response);
      deadline.clear();
    }
  }

  async get(key: string, options?: ReadOptions): Promise<Uint8Array> {
    const url = this.#url(checkKey(key));
    const capBytes = readLimit(key, options);
    const { response, deadline } = await this.#send("GET", url, key, { signal: options?.signal });
    try {
      if (response.status === 200 && !isDirectoryRedirect(response, url)) {
        return await this.#readBody(
          response,
          deadline,
          key,
          Infinity,
          capBytes,
          options?.onProgress,
        );
      }
      throw await this.#statusError(response, "GET", key, url);
    } finally {
      deadline.clear();
    }
  }

  async getRange(
    key: string,
    offset: number,
    length: number,
    options?: Pick<ReadOptions, "signal">,
  ): Promise<Uint8Array> {
    checkKey(key);
    if (
      !Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0
    ) {
      throw new UsageError(`invalid range offset ${offset} length ${length} of ${key}`);
    }
    if (length === 0) {
      if (await this.stat(key) === null) throw this.#notFound(key);
      return new Uint8Array(0);
    }
    const url = this.#url(key);
    const { response, deadline } = await this.#send("GET", url, key, {
      headers: { Range: `bytes=${offset}-${offset + length - 1}` },
      signal: options?.signal,
    });
    try {
      if (response.status === 206) {
        return await this.#readPartial(response, deadline, key, offset, length);
      }
      if (response.status === 200 && !isDirectoryRedirect(response, url)) {
        // The server ignored the range: read up to its end, then hang up.
        const data = await this.#readBody(response, deadline, key, offset + length);
        return data.subarray(Math.min(offset, data.length));
      }
      if (response.status === 416) {
        // Unsatisfiable: the range starts at or after the end, so the answer is empty.
        const total = parseContentRange(response.headers.get("content-range"))?.total;
        await discardBody(response);
        if (total !== undefined && total !== null && offset < total) {
          throw new ProtocolError(
            `${url} refused the range at ${offset} of an object of ${total} bytes (416)`,
          );
        }
        return new Uint8Array(0);
      }
      throw await this.#statusError(response, "GET", key, url);
    } finally {
      deadline.clear();
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const url = this.#url(checkKey(key));
    const { response, deadline } = await this.#send("HEAD", url, key);
    try {
      if (response.status === 404 || isDirectoryRedirect(response, url)) {
        await discardBody(response);
        return null;
      }
      if (response.status !== 200) throw await this.#statusError(response, "HEAD", key, url);
      await discardBody(response);
      const sizeBytes = Number(response.headers.get("content-length") ?? NaN);
      if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
        throw new ProtocolError(`HEAD ${url} answered without a Content-Length`);
      }
      // vat serve gives the time to the millisecond; Last-Modified has whole seconds.
      const precise = Number(response.headers.get("vat-modified-ms") ?? NaN);
      const modifiedMs = Number.isSafeInteger(precise)
        ? precise
        : Date.parse(response.headers.get("last-modified") ?? "") || 0;
      return { sizeBytes, modifiedMs };
    } finally {
      deadline.clear();
    }
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    checkKey(key);
    const signingKey = this.#writer(key);
    const url = this.#url(key);
    const { response, deadline } = await this.#send("PUT", url, key, { body: data, signingKey });
    try {
      if (response.ok) return await discardBody(response);
      throw await this.#statusError(response, "PUT", key, url);
    } finally {
      deadline.clear();
    }
  }

  async create(key: string, data: Uint8Array): Promise<boolean> {
    checkKey(key);
    const signingKey = this.#writer(key);
    const url = this.#url(key);
    // A create whose reply was lost and is retried finds its own object: vat serve
    // creates through FileStore, which then answers true for identical bytes.
    const { response, deadline } = await this.#send("PUT", url, key, {
      body: data,
      signingKey,
      headers: { "If-None-Match": "*" },
    });
    try {
      if (response.ok) {
        await discardBody(response);
        return true;
      }
      if (response.status === 412) {
        await discardBody(response);
        return false;
      }
      throw await this.#statusError(response, "PUT", key, url);
    } finally {
      deadline.clear();
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    checkPrefix(prefix);
    if (!this.canList) {
      throw new PermanentError(
        `${this.location} is a static HTTP server, which cannot list objects; ` +
          "run this on the repository's directory, or serve it with vat serve",
      );
    }
    let after = "";
    for (;;) {
      const page = await this.#listPage(prefix, after);
      for (const key of page.keys) yield key;
      if (page.next === null) return;
      after = page.next;
    }
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    const signingKey = this.#writer(key);
    const url = this.#url(key);
    const { response, deadline } = await this.#send("DELETE", url, key, { signingKey });
    try {
      if (response.ok || response.status === 404) return await discardBody(response);
      throw await this.#statusError(response, "DELETE", key, url);
    } finally {
      deadline.clear();
    }
  }

  close(): Promise<void> {
    if (!this.#closed) this.#client.close();
    this.#closed = true;
    return Promise.resolve();
  }

  /** One page of a listing (docs/HTTP.md, "Listing"); read whole, then yielded. */
  async #listPage(prefix: string, after: string): Promise<{ keys: string[]; next: string | null }> {
    const params: Record<string, string> = { list: "", limit: String(this.#listPageSize) };
    if (after) params.after = after;
    const url = this.#url(prefix, params);
    const { response, deadline } = await this.#send("GET", url, prefix);
    let text: string;
    try {
      if (response.status !== 200) throw await this.#statusError(response, "GET", prefix, url);
      // A key is at most 512 characters and a line; a page holds #listPageSize of them.
      const capBytes = this.#listPageSize * 520 + 1024;
      text = new TextDecoder().decode(
        await this.#readBody(response, deadline, prefix, Infinity, capBytes),
      );
    } finally {
      deadline.clear();
    }
    // A page ends with a line "#end" or "#more <cursor>"; without it, it was cut short.
    const lines = text.endsWith("\n") ? text.slice(0, -1).split("\n") : [];
    const end = lines.pop();
    let next: string | null;
    if (end === "#end") next = null;
    else if (end?.startsWith("#more ")) next = end.slice("#more ".length);
    else throw new TransientError(`the listing of ${url} broke off before its end; retry`);
    const keys = lines.map((line) => {
      try {
        return checkKey(prefix + line);
      } catch (err) {
        throw new ProtocolError(`the listing of ${url} holds a bad key "${line}"`, { cause: err });
      }
    });
    if (next !== null && (next === after || !next)) {
      throw new ProtocolError(`the listing of ${url} does not advance past "${after}"`);
    }
    return { keys, next };
  }

  #url(keyOrPrefix: string, extra: Record<string, string> = {}): string {
    const query = new URLSearchParams(this.#query);
    for (const [name, value] of Object.entries(extra)) query.set(name, value);
    const search = query.size ? `?${query}` : "";
    return `${this.#base}${keyOrPrefix}${search}`;
  }

  /** The key writes are signed with, or why there can be no write. */
  #writer(key: string): SigningKey {
    if (this.serverKind === "static") {
      throw new PermanentError(
        `cannot write ${key}: ${this.location} is a read-only HTTP repository (a static ` +
          "server); publish to the directory it serves, or serve that directory with " +
          "vat serve and use its URL",
      );
    }
    if (!this.#signingKey) {
      throw new PermanentError(
        `cannot write ${key} to ${this.location}: writes to vat serve are signed; pass ` +
          "--key KEY (a key from vat keygen that the server or the repository allows)",
      );
    }
    return this.#signingKey;
  }

  /** Sends one request; network failures and timeouts become `TransientError`. */
  async #send(
    method: string,
    url: string,
    key: string,
    init: {
      headers?: Record<string, string>;
      body?: Uint8Array;
      signingKey?: SigningKey;
      /** The caller's giving up: cancels the request and any body still coming. */
      signal?: AbortSignal;
    } = {},
  ): Promise<{ response: Response; deadline: Deadline }> {
    if (this.#closed) throw new UsageError(`the store ${this.location} is closed`);
    const headers = new Headers(init.headers);
    // Lengths and ranges must be of the stored bytes, not of a compressed rendition.
    headers.set("Accept-Encoding", "identity");
    if (init.signingKey) {
      const target = url.slice(url.indexOf("/", url.indexOf("://") + 3));
      const body = init.body ?? new Uint8Array(0);
      // The body is signed by its hash and length, which the server checks before
      // reading it (docs/HTTP.md, "Signed requests"); fetch sends the URL's host.
      headers.set(CONTENT_SHA256_HEADER, sha256Hex(body));
      headers.set(
        "Authorization",
        signRequest(init.signingKey, {
          method,
          host: new URL(url).host,
          target,
          ifNoneMatch: headers.get("if-none-match") ?? "",
          body,
        }),
      );
    } else if (this.#basicAuth) {
      headers.set("Authorization", this.#basicAuth);
    }
    const deadline = new Deadline(this.#timeoutMs, init.signal);
    deadline.renew(uploadAllowanceMs(this.#timeoutMs, init.body?.length ?? 0));
    try {
      const response = await fetch(url, {
        method,
        headers,
        body: init.body as BodyInit | undefined,
        signal: deadline.signal,
        client: this.#client,
      });
      deadline.renew();
      return { response, deadline };
    } catch (err) {
      deadline.clear();
      throw networkError(err, `${method} ${key} at ${this.location}`, deadline);
    }
  }

  /**
   * Reads a body (at most `limitBytes` of it, then hangs up), renewing the deadline as
   * bytes come; a body longer than `capBytes` is refused as soon as it says so or
   * passes it, before more is read.
   */
  async #readBody(
    response: Response,
    deadline: Deadline,
    key: string,
    limitBytes: number,
    capBytes = Infinity,
    onProgress?: (bytes: number) => void,
  ): Promise<Uint8Array> {
    // With Content-Encoding, fetch decodes and Content-Length no longer counts the bytes.
    const declaredText = response.headers.has("content-encoding")
      ? null
      : response.headers.get("content-length");
    const declared = declaredText === null ? null : Number(declaredText);
    if (declared !== null && (!Number.isSafeInteger(declared) || declared < 0)) {
      await discardBody(response);
      throw new ProtocolError(`${response.url} sent a bad Content-Length ${declaredText}`);
    }
    if (declared !== null && declared > capBytes) {
      await discardBody(response);
      throw tooLargeError(key, this.location, capBytes, declared);
    }
    let buffer = new Uint8Array(
      Math.min(declared ?? 64 * 1024, limitBytes, MAX_PREALLOCATE_BYTES),
    );
    let filled = 0;
    if (!response.body) return buffer.subarray(0, 0);
    const reader = response.body.getReader();
    try {
      while (filled < limitBytes) {
        const { done, value } = await reader.read();
        if (done) break;
        deadline.renew();
        onProgress?.(value.length);
        if (filled + value.length > capBytes) throw tooLargeError(key, this.location, capBytes);
        const take = Math.min(value.length, limitBytes - filled);
        if (filled + take > buffer.length) {
          const grown = new Uint8Array(
            Math.min(Math.max(buffer.length * 2, filled + take), limitBytes),
          );
          grown.set(buffer.subarray(0, filled));
          buffer = grown;
        }
        buffer.set(value.subarray(0, take), filled);
        filled += take;
      }
    } catch (err) {
      if (err instanceof IntegrityError) throw err;
      throw networkError(err, `GET ${key} at ${this.location}`, deadline);
    } finally {
      await reader.cancel().catch(() => {});
    }
    if (declared !== null && filled < Math.min(declared, limitBytes)) {
      throw new TransientError(
        `the connection to ${this.location} broke after ${filled} of ${declared} bytes of ${key}`,
      );
    }
    if (declared !== null && filled > declared) {
      throw new ProtocolError(`${response.url} sent more bytes than its Content-Length`);
    }
    return buffer.subarray(0, filled);
  }

  /** Reads and checks a 206 answer to the range `offset`, `length`. */
  async #readPartial(
    response: Response,
    deadline: Deadline,
    key: string,
    offset: number,
    length: number,
  ): Promise<Uint8Array> {
    const range = parseContentRange(response.headers.get("content-range"));
    const count = range?.start !== undefined ? range.end - range.start + 1 : 0;
    // Fewer bytes than asked are right only where the object ends.
    const expected = range && range.total !== null ? Math.min(length, range.total - offset) : count;
    if (
      !range || range.start !== offset || count > length || count !== expected ||
      response.headers.get("content-type")?.startsWith("multipart/")
    ) {
      await discardBody(response);
      throw new ProtocolError(
        `${response.url} answered the range ${offset}+${length} with ` +
          `Content-Range "${response.headers.get("content-range")}"`,
      );
    }
    const data = await this.#readBody(response, deadline, key, count);
    if (data.length !== count) {
      throw new TransientError(
        `the connection to ${this.location} broke after ${data.length} of ${count} bytes of ${key}`,
      );
    }
    return data;
  }

  /** The error for an unexpected status; reads (and so releases) the body. */
  #statusError(response: Response, method: string, key: string, url: string): Promise<VatError> {
    if (response.status === 404 || isDirectoryRedirect(response, url)) {
      return discardBody(response).then(() => this.#notFound(key));
    }
    const hint = this.serverKind === "vat-serve" && method !== "GET" && method !== "HEAD"
      ? "use --key with a key that vat serve was given (--allow-key) or that is in the " +
        "repository's publisherKeys"
      : "check the URL and any credentials in it";
    return statusError(response, `${method} ${this.location + key}`, hint);
  }

  #notFound(key: string): NotFoundError {
    return new NotFoundError(`${key} does not exist in ${this.location}`);
  }
}
