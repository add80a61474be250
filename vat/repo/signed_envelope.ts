/**
 * The signed envelope every signed repository object uses (manifests, key lists,
 * freshness statements; docs/FORMAT.md, "Versions"):
 * `{ "payload": "<JSON text>", "signatures": [{ "key": "ed25519:...", "sig": "..." }] }`.
 * Each signature covers a per-kind context line followed by the payload's UTF-8 bytes,
 * so a signature of one kind of object can never pass for another kind.
 *
 * @module
 */

import { IntegrityError } from "../errors.ts";
import {
  describeKey,
  keyFingerprint,
  signBytes,
  type SigningKey,
  verifyBytes,
} from "../auth/signing_key.ts";

/** At most this many signatures are looked at (each costs a verification). */
const MAX_SIGNATURES = 16;

/** Whose keys an envelope is held to, in the words its errors use. */
export interface EnvelopeTrust {
  /** e.g. "repository's trusted publisher keys". */
  keys: string;
  /** How a new key comes to be trusted. */
  howToAdd: string;
}

/** A repository's publishers (manifests, key lists, freshness statements). */
export const PUBLISHER_TRUST: EnvelopeTrust = {
  keys: "repository's trusted publisher keys",
  howToAdd: "a new publisher key is trusted only once a trusted key signs it in (vat repo add-key)",
};

interface Envelope {
  payload: string;
  signatures: { key: string; sig: string }[];
}

/** Serializes `payload` and signs it under `context` (a line such as "vat-manifest-v1\n"). */
export function signEnvelope(payload: string, context: string, key: SigningKey): Uint8Array {
  const sig = signBytes(key, new TextEncoder().encode(context + payload));
  const envelope: Envelope = { payload, signatures: [{ key: key.publicKeyId, sig }] };
  return new TextEncoder().encode(JSON.stringify(envelope, null, 1) + "\n");
}

/**
 * Opens an envelope: the payload text and the key whose valid signature made it
 * trusted. `IntegrityError` (its message starting with `what:`) when the bytes are not
 * an envelope, or no signature by one of `trustedKeys` verifies; when a signature
 * verifies under a key that is not trusted, the message names that key and its
 * fingerprint, so an administrator can tell a new publisher from a forger.
 */
export function openEnvelope(
  bytes: Uint8Array,
  context: string,
  trustedKeys: readonly string[],
  what: string,
  trust: EnvelopeTrust = PUBLISHER_TRUST,
): { payload: string; signer: string } {
  let envelope: Envelope;
  try {
    envelope = JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw new IntegrityError(`${what}: not valid JSON`, { cause: err });
  }
  if (typeof envelope?.payload !== "string" || !Array.isArray(envelope.signatures)) {
    throw new IntegrityError(`${what}: not a signed envelope`);
  }
  const message = new TextEncoder().encode(context + envelope.payload);
  const signatures = envelope.signatures.slice(0, MAX_SIGNATURES).filter((s) =>
    typeof s?.key === "string" && typeof s.sig === "string"
  );
  const signer = signatures.find((s) =>
    trustedKeys.includes(s.key) && verifyBytes(s.key, message, s.sig)
  );
  if (signer) return { payload: envelope.payload, signer: signer.key };
  const trusted = trustedKeys.length
    ? trustedKeys.map((k) => _fingerprintOr(k)).join(", ")
    : "none";
  const stranger = signatures.find((s) => verifyBytes(s.key, message, s.sig));
  if (stranger) {
    throw new IntegrityError(
      `${what}: signed by ${describeKey(stranger.key)}, which is not among the ` +
        `${trust.keys} (trusted: ${trusted}); ${trust.howToAdd}`,
    );
  }
  throw new IntegrityError(
    `${what}: signature does not verify against the ${trust.keys} (${trusted}): ` +
      `the object was altered, or signed by an unknown key`,
  );
}

function _fingerprintOr(id: string): string {
  try {
    return keyFingerprint(id);
  } catch {
    return JSON.stringify(id);
  }
}
