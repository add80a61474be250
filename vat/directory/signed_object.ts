/**
 * Directory objects (docs/USERS.md, "The directory") in the repository's signed envelope
 * (`vat/repo/signed_envelope.ts`, the same as a version manifest's), each kind under its
 * own context line, so a signature made for one kind of object never passes for
 * another; with a size limit and a payload that must be a JSON object.
 *
 * @module
 */

import { IntegrityError } from "../errors.ts";
import type { SigningKey } from "../auth/signing_key.ts";
import { openEnvelope, signEnvelope } from "../repo/signed_envelope.ts";

/** The largest directory object a reader accepts. */
export const MAX_DIRECTORY_OBJECT_BYTES = 256 * 1024;

/** Signs `payload` under `context` (e.g. "vat-user-entry-v1\n"). */
export function signObject(context: string, payload: unknown, key: SigningKey): Uint8Array {
  return signEnvelope(JSON.stringify(payload), context, key);
}

/** An opened envelope: its parsed payload and the key that signed it. */
export interface OpenedObject {
  payload: Record<string, unknown>;
  signedBy: string;
}

/** Who may sign directory objects: its administrators (and a user, for their own slots). */
const _DIRECTORY_TRUST = {
  keys: "keys it may be signed by",
  howToAdd: "refused (an administrator's key, or the user's own for their key slots)",
};

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
  const { payload: text, signer } = openEnvelope(
    bytes,
    context,
    trustedKeys,
    what,
    _DIRECTORY_TRUST,
  );
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch (err) {
    throw new IntegrityError(`${what}: payload is not valid JSON`, { cause: err });
  }
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    throw new IntegrityError(`${what}: payload is not an object`);
  }
  return { payload: payload as Record<string, unknown>, signedBy: signer };
}
