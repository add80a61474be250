/**
 * The signed envelope of directory objects (docs/USERS.md, "The directory"): the same
 * shape as a version manifest's, `{"payload": "<JSON text>", "signatures": [{key, sig}]}`,
 * each signature over a context line and the payload, so a signature made for one kind
 * of object never passes for another.
 *
 * @module
 */

import { IntegrityError } from "../errors.ts";
import { signBytes, type SigningKey, verifyBytes } from "../auth/signing_key.ts";

/** The largest directory object a reader accepts. */
export const MAX_DIRECTORY_OBJECT_BYTES = 256 * 1024;

/** Signs `payload` under `context` (e.g. "vat-user-entry-v1\n"). */
export function signObject(context: string, payload: unknown, key: SigningKey): Uint8Array {
  const text = JSON.stringify(payload);
  const sig = signBytes(key, new TextEncoder().encode(context + text));
  return new TextEncoder().encode(
    JSON.stringify({ payload: text, signatures: [{ key: key.publicKeyId, sig }] }, null, 2) +
      "\n",
  );
}

/** An opened envelope: its parsed payload and the key that signed it. */
export interface OpenedObject {
  payload: Record<string, unknown>;
  signedBy: string;
}

/**
 * Opens an envelope; throws `IntegrityError` (naming `what`) unless it is well formed
 * and signed under `context` by one of `trustedKeys`.
 */
export function openObject(
  bytes: Uint8Array,
  context: string,
  trustedKeys: readonly string[],
  what: string,
): OpenedObject {
  if (bytes.length > MAX_DIRECTORY_OBJECT_BYTES) {
    throw new IntegrityError(`${what} is ${bytes.length} bytes, larger than any valid one`);
  }
  let envelope: { payload?: unknown; signatures?: unknown };
  try {
    envelope = JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw new IntegrityError(`${what} is not valid JSON`, { cause: err });
  }
  if (typeof envelope?.payload !== "string" || !Array.isArray(envelope.signatures)) {
    throw new IntegrityError(`${what} is not a signed directory object`);
  }
  const message = new TextEncoder().encode(context + envelope.payload);
  const good = envelope.signatures.find((s: { key?: unknown; sig?: unknown }) =>
    typeof s?.key === "string" && typeof s.sig === "string" && trustedKeys.includes(s.key) &&
    verifyBytes(s.key, message, s.sig)
  ) as { key: string } | undefined;
  if (!good) {
    throw new IntegrityError(
      `${what} is not signed by a key it may be signed by (${trustedKeys.join(", ")}); refused`,
    );
  }
  let payload: unknown;
  try {
    payload = JSON.parse(envelope.payload);
  } catch (err) {
    throw new IntegrityError(`${what}: payload is not valid JSON`, { cause: err });
  }
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    throw new IntegrityError(`${what}: payload is not an object`);
  }
  return { payload: payload as Record<string, unknown>, signedBy: good.key };
}
