/**
 * Signed write requests of `vat serve`, both ends: `HttpStore` signs, the server
 * verifies. The bytes are specified in docs/HTTP.md ("Signed requests"):
 *
 *     Authorization: Vat-Ed25519 key=<key id>, ts=<unix ms>, nonce=<base64url>, sig=<base64url>
 *
 * where `sig` is the publisher's ed25519 signature of the canonical string made by
 * `canonicalRequest`. The first line names the protocol so that a request signature can
 * never be mistaken for a signature of anything else made with the same key (a manifest).
 * The body is signed by its declared SHA-256 (the `Vat-Content-Sha256` header) and
 * length (`Content-Length`), so the server checks the signature before it reads a byte
 * of the body, then checks the body against what was declared as it streams in.
 *
 * @module
 */

import { createHash, randomBytes } from "node:crypto";
import { type PublicKeyId, signBytes, type SigningKey, verifyBytes } from "./signing_key.ts";

/** The authorization scheme. */
export const SIGNATURE_SCHEME = "Vat-Ed25519";

/** How far a request's timestamp may be from the server's clock. */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;

const CONTEXT = "vat-serve-request-v2";

/** The header that declares a signed request's body hash (lower-case hex SHA-256). */
export const CONTENT_SHA256_HEADER = "Vat-Content-Sha256";

/** What a signature covers. */
export interface SignedRequestParts {
  /** The HTTP method, upper case. */
  method: string;
  /** The `Host` header as sent (`host:port`, lower case), so a request is bound to its server. */
  host: string;
  /** The request target as sent: path and query (`/apps/a/latest`). */
  target: string;
  /** The `If-None-Match` header, or "" when absent (it turns a put into a create). */
  ifNoneMatch: string;
  /** Lower-case hex SHA-256 of the body (of no bytes when there is no body). */
  bodySha256: string;
  /** The body's length in bytes (0 when there is none). */
  bodyBytes: number;
  timestampMs: number;
  nonce: string;
}

/** The parsed `Authorization` header. */
export interface RequestSignature {
  keyId: PublicKeyId;
  timestampMs: number;
  nonce: string;
  signature: string;
}

/** Lower-case hex SHA-256 of `body`. */
export function sha256Hex(body: Uint8Array): string {
  return createHash("sha256").update(body).digest("hex");
}

/** The bytes that are signed. */
export function canonicalRequest(parts: SignedRequestParts): Uint8Array {
  return new TextEncoder().encode(
    [
      CONTEXT,
      parts.method,
      parts.host.toLowerCase(),
      parts.target,
      parts.ifNoneMatch,
      String(parts.timestampMs),
      parts.nonce,
      parts.bodySha256,
      String(parts.bodyBytes),
    ].join("\n"),
  );
}

/**
 * Signs a request now; returns the `Authorization` header value. The request must also
 * carry `Vat-Content-Sha256: sha256Hex(body)` and the body's `Content-Length`.
 */
export function signRequest(
  key: SigningKey,
  request: {
    method: string;
    host: string;
    target: string;
    ifNoneMatch?: string;
    body: Uint8Array;
  },
  nowMs = Date.now(),
): string {
  const nonce = randomBytes(16).toString("base64url");
  const sig = signBytes(
    key,
    canonicalRequest({
      method: request.method,
      host: request.host,
      target: request.target,
      ifNoneMatch: request.ifNoneMatch ?? "",
      bodySha256: sha256Hex(request.body),
      bodyBytes: request.body.length,
      timestampMs: nowMs,
      nonce,
    }),
  );
  return `${SIGNATURE_SCHEME} key=${key.publicKeyId}, ts=${nowMs}, nonce=${nonce}, sig=${sig}`;
}

/**
 * Parses an `Authorization` header; returns null when it is absent or not of the
 * `Vat-Ed25519` scheme, and throws `SyntaxError` (with the reason) when it is of that
 * scheme but malformed.
 */
export function parseAuthorization(header: string | null | undefined): RequestSignature | null {
  if (!header) return null;
  const space = header.indexOf(" ");
  const scheme = space < 0 ? header : header.slice(0, space);
  if (scheme.toLowerCase() !== SIGNATURE_SCHEME.toLowerCase()) return null;
  const fields = new Map<string, string>();
  for (const part of header.slice(space + 1).split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) throw new SyntaxError(`"${part.trim()}" is not name=value`);
    fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const keyId = fields.get("key");
  const ts = fields.get("ts");
  const nonce = fields.get("nonce");
  const signature = fields.get("sig");
  if (!keyId || !ts || !nonce || !signature) {
    throw new SyntaxError("it needs key=, ts=, nonce= and sig=");
  }
  if (!/^\d{1,16}$/.test(ts)) throw new SyntaxError(`ts=${ts} is not a time in milliseconds`);
  if (!/^[A-Za-z0-9_-]{16,64}$/.test(nonce)) throw new SyntaxError("nonce is not base64url");
  return { keyId, timestampMs: Number(ts), nonce, signature };
}

/** Whether `signature` is a valid signature of the request `parts` describe. */
export function verifyRequest(
  signature: RequestSignature,
  parts: Omit<SignedRequestParts, "timestampMs" | "nonce">,
): boolean {
  return verifyBytes(
    signature.keyId,
    canonicalRequest({ ...parts, timestampMs: signature.timestampMs, nonce: signature.nonce }),
    signature.signature,
  );
}
