/**
 * `S3Connection`: one endpoint and bucket of an S3-compatible server as the S3
 * transport talks to it: SigV4 signing (`aws4fetch`, path-style addressing), one
 * request's time limit and its caller's abort, reading bounded bodies, and every
 * failure mapped once, in `fail`: 404 is `NotFoundError`, 401 and 403 are
 * `PermanentError` (credentials refused), 429, 5xx, timeouts and network failures are
 * `TransientError` (a retrying wrapper may try again), anything else a
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
  VatError,
} from "../errors.ts";
import { uploadAllowanceMs } from "./http_exchange.ts";
import { parseS3Error } from "./s3_xml.ts";
import { parseRetryAfter, readStreamCapped, readStreamHead } from "./store.ts";

/** Where an S3 bucket is and how to sign in. */
export interface S3ConnectionOptions {
  bucket: string;
  /** Base URL of the S3 API, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:7480`. */
  endpoint: string;
  /** The SigV4 signing region (`us-east-1` for most non-AWS servers). */
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /**
   * Time limit of one request including its answer's body, in milliseconds (default
   * 120 s); a request with a body gets more, at `MIN_UPLOAD_BYTES_PER_SECOND`.
   */
  timeoutMs?: number;
}

/** The default time limit of one request. */
const DEFAULT_TIMEOUT_MS = 120_000;
/** The most of an error answer read for its code and message. */
const _ERROR_TEXT_BYTES = 64 * 1024;

/** Signing, sending and error mapping for one endpoint and bucket. */
export class S3Connection {
  readonly endpoint: string;
  readonly bucket: string;
  readonly #aws: AwsClient;
  readonly #http: Deno.HttpClient;
  readonly #timeoutMs: number;

  constructor(options: S3ConnectionOptions) {
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
      /** The caller's giving up: cancels the request and its body. */
      signal?: AbortSignal;
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
      // The limit grows with the body: fetch does not tell how much of it has gone.
      const limit = AbortSignal.timeout(
        uploadAllowanceMs(this.#timeoutMs, init.body?.length ?? 0),
      );
      return await fetch(signed, {
        client: this.#http,
        signal: init.signal ? AbortSignal.any([init.signal, limit]) : limit,
      });
    } catch (err) {
      throw this.#networkError(err, init.what);
    }
  }

  /**
   * Reads a whole answer of at most `capBytes` (refused by `tooLarge` when it says or
   * turns out to be longer, without reading on); a connection lost on the way is
   * transient.
   */
  async body(
    res: Response,
    what: string,
    capBytes: number,
    tooLarge: (sizeBytes?: number) => Error,
    onProgress?: (bytes: number) => void,
  ): Promise<Uint8Array> {
    const declared = Number(res.headers.get("Content-Length") ?? NaN);
    if (Number.isSafeInteger(declared) && declared > capBytes) {
      await res.body?.cancel().catch(() => {});
      throw tooLarge(declared);
    }
    if (!res.body) return new Uint8Array(0);
    try {
      return await readStreamCapped(res.body, capBytes, tooLarge, declared || 0, onProgress);
    } catch (err) {
      if (err instanceof VatError) throw err;
      throw this.#networkError(err, what);
    }
  }

  /** Reads an (error) answer's first 64 KiB as text, or "" when it cannot be read. */
  async text(res: Response): Promise<string> {
    if (!res.body) return "";
    try {
      return new TextDecoder().decode(await readStreamHead(res.body, _ERROR_TEXT_BYTES));
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
    const { code, message } = parseS3Error(body);
    const detail = [code, message].filter(Boolean).join(": ");
    const where = `bucket "${this.bucket}" at ${this.endpoint}`;
    if (code === "RequestTimeTooSkewed") {
      return new PermanentError(
        `S3 refused to ${what} in ${where}: this machine's clock is more than 15 minutes ` +
          `off (${detail}); set the system time`,
      );
    }
    if (status === 401 || status === 403) {
      return new PermanentError(
        `S3 refused the credentials for ${where} when trying to ${what} (${
          detail || `HTTP ${status}`
        }): check ` +
          `AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and that this key may use the bucket`,
      );
    }
    if (status === 404) {
      return new NotFoundError(
        `S3 could not ${what} in ${where}: not found` + (detail ? ` (${detail})` : ""),
      );
    }
    if (status === 429 || status >= 500) {
      return new TransientError(
        `S3 failed to ${what} in ${where} (HTTP ${status}${detail ? `, ${detail}` : ""}): ` +
          "try again later",
        { status, retryAfterMs },
      );
    }
    return new ProtocolError(
      `S3 answered the request to ${what} in ${where} with HTTP ${status}` +
        (detail ? ` (${detail})` : ""),
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

function _encodeRfc3986(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}
