/**
 * Ed25519 signing keys: publishers sign versions with them, `vat serve` authorises
 * writes by them. A private key file is PKCS#8 PEM (as `openssl genpkey -algorithm
 * ed25519` writes it, mode 0600); its public key is written beside it as `KEY.pub`, one
 * line `ed25519:<base64url of the 32-byte key>`, which is also the key's id everywhere.
 *
 * @module
 */

import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  KeyObject,
  sign,
  verify,
} from "node:crypto";
import { IntegrityError, NotFoundError, UsageError } from "../errors.ts";
import { writeFileAtomic } from "../fs_atomic.ts";

/** A public key id: `ed25519:` and the base64url raw key. */
export type PublicKeyId = string;

/** A loaded private key with its public id. */
export interface SigningKey {
  readonly publicKeyId: PublicKeyId;
  readonly privateKey: KeyObject;
}

const PREFIX = "ed25519:";

/** Makes a new key pair and writes `path` (private, 0600) and `path.pub`. */
export async function generateSigningKey(path: string): Promise<SigningKey> {
  const { privateKey } = generateKeyPairSync("ed25519");
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }) as string;
  try {
    await Deno.stat(path);
    throw new UsageError(`${path} already exists; refusing to overwrite a key`);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  await writeFileAtomic(path, new TextEncoder().encode(pem), { mode: 0o600 });
  const key = { privateKey, publicKeyId: publicKeyIdOf(privateKey) };
  await writeFileAtomic(`${path}.pub`, new TextEncoder().encode(key.publicKeyId + "\n"));
  return key;
}

/** Loads a private key file written by `generateSigningKey` (or openssl). */
export async function loadSigningKey(path: string): Promise<SigningKey> {
  let pem: string;
  try {
    pem = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new NotFoundError(
        `key file ${path} does not exist (make one with: vat keygen --out ${path})`,
      );
    }
    throw err;
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (err) {
    throw new UsageError(`${path} is not a private key (expected PKCS#8 PEM from vat keygen)`, {
      cause: err,
    });
  }
  if (privateKey.asymmetricKeyType !== "ed25519") {
    throw new UsageError(`${path} is a ${privateKey.asymmetricKeyType} key; vat needs ed25519`);
  }
  return { privateKey, publicKeyId: publicKeyIdOf(privateKey) };
}

/** Reads a public key id from a `.pub` file or takes it literally (`ed25519:...`). */
export async function readPublicKeyId(pathOrId: string): Promise<PublicKeyId> {
  let text = pathOrId;
  if (!pathOrId.startsWith(PREFIX)) {
    try {
      text = (await Deno.readTextFile(pathOrId)).trim();
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      throw new UsageError(
        `public key ${pathOrId} does not exist (give a KEY.pub file or an "ed25519:..." id)`,
      );
    }
  }
  parsePublicKeyId(text);
  return text;
}

/**
 * A key's fingerprint, for people to compare out of band (as ssh shows them):
 * `SHA256:` and the unpadded base64 of the SHA-256 of the raw 32-byte key. Throws
 * `IntegrityError` for a malformed key id.
 */
export function keyFingerprint(id: PublicKeyId): string {
  parsePublicKeyId(id);
  const raw = Buffer.from(id.slice(PREFIX.length), "base64url");
  return "SHA256:" + createHash("sha256").update(raw).digest("base64").replace(/=+$/, "");
}

/** `ed25519:... (SHA256:...)`: how messages name a key. */
export function describeKey(id: string): string {
  try {
    return `${id} (${keyFingerprint(id)})`;
  } catch {
    return JSON.stringify(id);
  }
}

function publicKeyIdOf(privateKey: KeyObject): PublicKeyId {
  const jwk = createPublicKey(privateKey).export({ format: "jwk" });
  return PREFIX + jwk.x;
}

function parsePublicKeyId(id: PublicKeyId): KeyObject {
  if (!id.startsWith(PREFIX) || !/^[A-Za-z0-9_-]{43}$/.test(id.slice(PREFIX.length))) {
    throw new IntegrityError(`"${id}" is not an ed25519 public key id`);
  }
  return createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: id.slice(PREFIX.length) },
    format: "jwk",
  });
}

/** Signs `message`; returns the base64url signature. */
export function signBytes(key: SigningKey, message: Uint8Array): string {
  return sign(null, message, key.privateKey).toString("base64url");
}

/** Whether `signature` (base64url) is `keyId`'s signature of `message`. */
export function verifyBytes(keyId: PublicKeyId, message: Uint8Array, signature: string): boolean {
  let publicKey: KeyObject;
  try {
    publicKey = parsePublicKeyId(keyId);
  } catch {
    return false;
  }
  const sig = Buffer.from(signature, "base64url");
  if (sig.length !== 64) return false;
  return verify(null, message, publicKey, sig);
}
