/**
 * Authorisation of writes (PUT, DELETE) by publisher key (docs/HTTP.md, "Signed
 * requests"). A write is let through only when its `Authorization: Vat-Ed25519`
 * signature verifies over this very request (method, target, `If-None-Match`, body),
 * its timestamp is within `MAX_CLOCK_SKEW_MS` of the server's clock, it was not seen
 * before, and its key is one given to the server or one of the `publisherKeys` of the
 * repository the object belongs to (`owningRepository`). Otherwise: 401 when the
 * request is not (validly) signed, 403 when the key may not write there.
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { owningRepository } from "./publisher_keys.ts";
import { userMayWriteSlots } from "./directory_login.ts";
import type { ReplayGuard } from "./replay_guard.ts";
import {
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
  replayGuard: ReplayGuard;
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
    const body = await _readBody(c.req.raw, options.maxObjectBytes);
    const valid = verifyRequest(signature, {
      method: c.req.method,
      target: path.target,
      ifNoneMatch: c.req.header("if-none-match") ?? "",
      bodySha256: sha256Hex(body),
    });
    if (!valid) {
      throw new HTTPException(401, {
        message: `the signature by ${signature.keyId} does not match this request ` +
          "(its body, path or If-None-Match differ from what was signed)",
      });
    }
    if (!options.replayGuard.remember(signature.keyId, signature.nonce)) {
      throw new HTTPException(401, {
        message: "this signed request was already received (a replay); sign every request afresh",
      });
    }
    c.set("body", body);
    await next();
  };
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

async function _readBody(request: Request, maxBytes: number): Promise<Uint8Array> {
  const tooLarge = () =>
    new HTTPException(413, { message: `the body is larger than ${maxBytes} bytes` });
  const declared = Number(request.headers.get("content-length") ?? NaN);
  if (declared > maxBytes) throw tooLarge();
  if (!request.body) return new Uint8Array(0);
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const part of request.body) {
    total += part.length;
    if (total > maxBytes) throw tooLarge();
    parts.push(part);
  }
  if (parts.length === 1) return parts[0];
  const body = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    body.set(part, offset);
    offset += part.length;
  }
  return body;
}
