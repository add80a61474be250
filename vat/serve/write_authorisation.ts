/**
 * Authorisation of writes (PUT, DELETE) by publisher key (docs/HTTP.md, "Signed
 * requests"). A write is let through only when its `Authorization: Vat-Ed25519`
 * signature verifies over this very request (method, Host, target, `If-None-Match`,
 * the body's declared SHA-256 and length), its timestamp is within `MAX_CLOCK_SKEW_MS`
 * of the server's clock, it was not seen before, and its key is one given to the
 * server or one of the `publisherKeys` of the repository the object belongs to
 * (`owningRepository`). Otherwise: 401 when the request is not (validly) signed, 403
 * when the key may not write there. All of it is decided before a byte of the body is
 * read; the body is then handed on as a stream (`SignedUpload`) that is checked
 * against its declared length and hash as it arrives, and dropped when it stalls.
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { owningRepository } from "./publisher_keys.ts";
import { userMayWriteSlots } from "./directory_login.ts";
import type { ReplayGuard } from "./replay_guard.ts";
import { createHash } from "node:crypto";
import {
  CONTENT_SHA256_HEADER,
  MAX_CLOCK_SKEW_MS,
  parseAuthorization,
  type RequestSignature,
  sha256Hex,
  verifyRequest,
} from "../auth/request_signature.ts";
import type { ServeEnv } from "./serve_env.ts";

/** Options of `writeAuthorisation`. */
export interface WriteAuthorisationOptions {
  /** The served directory. */
  root: string;
  /** Keys that may write anywhere under the root (`--allow-key`). */
  allowKeys: ReadonlySet<string>;
  /** The largest body accepted (413 beyond). */
  maxObjectBytes: number;
  /**
   * How long a body may stall before it is dropped (408); the whole body also gets
   * this plus its length at `MIN_BODY_BYTES_PER_S`.
   */
  bodyTimeoutMs: number;
  replayGuard: ReplayGuard;
  /**
   * The `Host` values (lower case `name:port`) writes must be signed for; empty: any.
   * A request signed for another server that trusts the same key is then refused.
   */
  hosts: readonly string[];
  /** The server's clock (tests move it). */
  nowMs?: () => number;
}

/** Middleware: admits only writes signed by a key allowed to write the object. */
export function writeAuthorisation(
  options: WriteAuthorisationOptions,
): MiddlewareHandler<ServeEnv> {
  const nowMs = options.nowMs ?? Date.now;
  return async function writeAuthorisation(c, next) {
    const path = c.get("objectPath");
    const signature = _signatureOf(c.req.header("authorization"));
    c.set("publisherKey", signature.keyId);
    const skewMs = signature.timestampMs - nowMs();
    if (Math.abs(skewMs) > MAX_CLOCK_SKEW_MS) {
      throw new HTTPException(401, {
        message:
          `the request was signed at a time ${Math.round(Math.abs(skewMs) / 1000)} s ${
            skewMs < 0 ? "behind" : "ahead of"
          } the server's clock (at most ${MAX_CLOCK_SKEW_MS / 1000} s allowed); ` +
          "set this machine's clock right (NTP) and retry",
      });
    }
    if (path.isDirectory || path.key === "") {
      throw new HTTPException(400, { message: `${path.target} is a directory, not an object` });
    }
    // Checked before the body is read, so a stranger cannot make the server read a body.
    if (!options.allowKeys.has(signature.keyId)) {
      const repo = await owningRepository(options.root, path.key);
      if (
        !repo.publisherKeys.includes(signature.keyId) &&
        !(await userMayWriteSlots(options.root, path.key, signature.keyId))
      ) {
        throw new HTTPException(403, {
          message: _forbiddenReason(signature.keyId, path.key, repo),
        });
      }
    }
    const host = (c.req.header("host") ?? "").toLowerCase();
    if (options.hosts.length > 0 && !options.hosts.includes(host)) {
      throw new HTTPException(421, {
        message: `this server takes writes for ${options.hosts.join(", ")}, not for "${host}"`,
      });
    }
    const declared = _declaredBody(c.req.raw, options.maxObjectBytes);
    const valid = verifyRequest(signature, {
      method: c.req.method,
      host,
      target: path.target,
      ifNoneMatch: c.req.header("if-none-match") ?? "",
      bodySha256: declared.sha256,
      bodyBytes: declared.bytes,
    });
    if (!valid) {
      throw new HTTPException(401, {
        message: `the signature by ${signature.keyId} does not match this request ` +
          "(its body's hash or length, Host, path or If-None-Match differ from what was signed)",
      });
    }
    const verdict = options.replayGuard.remember(signature.keyId, signature.nonce);
    if (verdict === "replay") {
      throw new HTTPException(401, {
        message: "this signed request was already received (a replay); sign every request afresh",
      });
    }
    if (verdict === "full") {
      throw new HTTPException(503, {
        message: "the server remembers too many signed requests of the last 10 minutes to " +
          "tell a replay; retry in a few minutes",
      });
    }
    c.set("upload", new SignedUpload(c.req.raw, declared, options.bodyTimeoutMs));
    await next();
  };
}

/** The least rate a body must arrive at, on top of the stall allowance. */
export const MIN_BODY_BYTES_PER_S = 16 * 1024;

/**
 * A signed write's body as it streams in: `parts` yields it (at most its declared
 * length, each part as it arrives, failing with 408 when it stalls); `check()` throws
 * unless exactly the declared bytes with the declared hash arrived. Nothing is kept
 * in memory but the part in hand.
 */
export class SignedUpload {
  readonly declaredBytes: number;
  readonly declaredSha256: string;
  receivedBytes = 0;
  readonly #request: Request;
  readonly #hash = createHash("sha256");
  readonly #timeoutMs: number;
  #done = false;
  #actual: string | undefined;

  constructor(request: Request, declared: { bytes: number; sha256: string }, timeoutMs: number) {
    this.#request = request;
    this.declaredBytes = declared.bytes;
    this.declaredSha256 = declared.sha256;
    this.#timeoutMs = timeoutMs;
  }

  /** The body's parts; read it once. */
  async *parts(): AsyncIterable<Uint8Array> {
    if (!this.#request.body) {
      this.#done = true;
      return;
    }
    const reader = this.#request.body.getReader();
    const totalMs = this.#timeoutMs + (this.declaredBytes / MIN_BODY_BYTES_PER_S) * 1000;
    const endMs = Date.now() + totalMs;
    try {
      for (;;) {
        const waitMs = Math.min(this.#timeoutMs, endMs - Date.now());
        const { done, value } = await _withinMs(
          reader.read(),
          waitMs,
          () =>
            new HTTPException(408, {
              message: `the body stalled or came too slowly (${this.receivedBytes} of ` +
                `${this.declaredBytes} bytes received); it was dropped`,
            }),
        );
        if (done) break;
        this.receivedBytes += value.length;
        if (this.receivedBytes > this.declaredBytes) {
          throw new HTTPException(400, {
            message: `the body is longer than its Content-Length ${this.declaredBytes}`,
          });
        }
        this.#hash.update(value);
        yield value;
      }
      this.#done = true;
    } finally {
      await reader.cancel().catch(() => {});
    }
  }

  /** Throws unless the whole body arrived as declared (and signed). */
  check(): void {
    if (!this.#done || this.receivedBytes !== this.declaredBytes) {
      throw new HTTPException(400, {
        message: `the body ended after ${this.receivedBytes} of its ${this.declaredBytes} bytes`,
      });
    }
    this.#actual ??= this.#hash.digest("hex");
    if (this.#actual !== this.declaredSha256) {
      throw new HTTPException(400, {
        message: `the body does not match the ${CONTENT_SHA256_HEADER} it was signed with ` +
          "(it was changed on the way); nothing was written",
      });
    }
  }
}

/** `promise`, or `timeout()` thrown after `ms`. */
function _withinMs<T>(promise: Promise<T>, ms: number, timeout: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(timeout()), Math.max(0, ms));
    }),
  ]);
}

function _signatureOf(header: string | undefined): RequestSignature {
  let signature: RequestSignature | null;
  try {
    signature = parseAuthorization(header);
  } catch (err) {
    throw new HTTPException(401, {
      message: `malformed Vat-Ed25519 Authorization header: ${(err as Error).message}`,
    });
  }
  if (!signature) {
    throw new HTTPException(401, {
      message: "writes must be signed with a publisher key (Authorization: Vat-Ed25519 ...); " +
        "give the client --key KEY, a key this server or the repository allows",
    });
  }
  return signature;
}

function _forbiddenReason(
  keyId: string,
  key: string,
  repo: Awaited<ReturnType<typeof owningRepository>>,
): string {
  const base = `key ${keyId} may not write ${key}`;
  if (repo.repoJson === null) {
    return `${base}: it belongs to no repository and the key was not given to vat serve ` +
      "(--allow-key); ask the server's operator to allow it";
  }
  if (repo.problem) {
    return `${base}: ${repo.repoJson} cannot be read (${repo.problem}) and the key was not ` +
      "given to vat serve (--allow-key)";
  }
  return `${base}: it is neither in the publisherKeys of ${repo.repoJson} nor given to ` +
    "vat serve (--allow-key); ask a publisher of that repository to add it";
}

/**
 * The body a request declares (`Content-Length`, `Vat-Content-Sha256`), checked before
 * anything is read: 411 without a length on a PUT, 413 over the limit, 400 for a
 * malformed hash.
 */
function _declaredBody(request: Request, maxBytes: number): { bytes: number; sha256: string } {
  const lengthText = request.headers.get("content-length");
  const hashText = request.headers.get(CONTENT_SHA256_HEADER);
  if (lengthText === null) {
    if (request.method === "PUT") {
      throw new HTTPException(411, {
        message: "a signed write must say its body's length (Content-Length)",
      });
    }
    return { bytes: 0, sha256: hashText ?? sha256Hex(new Uint8Array(0)) };
  }
  if (!/^\d{1,16}$/.test(lengthText)) {
    throw new HTTPException(400, { message: `Content-Length ${lengthText} is not a length` });
  }
  const bytes = Number(lengthText);
  if (bytes > maxBytes) {
    throw new HTTPException(413, {
      message: `the body of ${bytes} bytes is larger than this server's limit of ${maxBytes}`,
    });
  }
  if (hashText === null || !/^[0-9a-f]{64}$/.test(hashText)) {
    throw new HTTPException(400, {
      message: `a signed write must declare its body's SHA-256 (${CONTENT_SHA256_HEADER}: ` +
        "64 lower-case hex digits); update vat",
    });
  }
  return { bytes, sha256: hashText };
}
