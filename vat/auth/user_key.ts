/**
 * A user's key: the one secret that opens their data repository (docs/FORMAT.md,
 * "Data repositories"). The file holds 32 random bytes; every key vat uses for the
 * user's data is derived from them with HKDF-SHA256 under its own label, so one
 * purpose's key never serves another:
 *
 * - `chunkKey`: AES-256-GCM over chunk objects and disk indexes;
 * - `nameKey`: HMAC-SHA256 that names chunks (a bare hash would tell the server which
 *   chunks hold well-known content);
 * - `signingKey`: the ed25519 key that signs the user's versions; its public id is the
 *   data repository's one publisher key, which is how a wrong key is recognised
 *   before anything is read or written.
 *
 * The file is JSON, `{"type": "vat-user-key", "format": 1, "secret": "<base64url>"}`,
 * mode 0600.
 *
 * @module
 */

import { createPrivateKey, createPublicKey, hkdfSync, randomBytes } from "node:crypto";
import { NotFoundError, UsageError } from "../errors.ts";
import { writeFileAtomic } from "../fs_atomic.ts";
import type { SigningKey } from "./signing_key.ts";

/** The keys derived from a user's secret. */
export interface UserKey {
  /** Where it was loaded from (for messages). */
  readonly path: string;
  readonly chunkKey: Uint8Array;
  readonly nameKey: Uint8Array;
  readonly signingKey: SigningKey;
}

const SECRET_BYTES = 32;
/** The DER header of a PKCS#8 ed25519 private key; the 32-byte seed follows it. */
const ED25519_PKCS8_PREFIX = Uint8Array.from([
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x70,
  0x04,
  0x22,
  0x04,
  0x20,
]);

/** Makes a new user key at `path` (mode 0600); refuses to overwrite one. */
export async function generateUserKey(path: string): Promise<UserKey> {
  const secret = new Uint8Array(randomBytes(SECRET_BYTES));
  const file = {
    type: "vat-user-key",
    format: 1,
    secret: Buffer.from(secret).toString("base64url"),
  };
  // Created exclusively (linked into place only if nothing is there), so neither an
  // existing key nor one made by a racing keygen is ever overwritten.
  const created = await writeFileAtomic(
    path,
    new TextEncoder().encode(JSON.stringify(file) + "\n"),
    { mode: 0o600, exclusive: true },
  );
  if (!created) throw new UsageError(`${path} already exists; refusing to overwrite a key`);
  return deriveUserKey(secret, path);
}

/** Loads a user key file written by `generateUserKey`. */
export async function loadUserKey(path: string): Promise<UserKey> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new NotFoundError(
        `user key ${path} does not exist (make one with: vat keygen --user --out ${path})`,
      );
    }
    throw err;
  }
  let secret: Uint8Array | null = null;
  try {
    const file = JSON.parse(text);
    if (file?.type === "vat-user-key" && file.format === 1 && typeof file.secret === "string") {
      secret = new Uint8Array(Buffer.from(file.secret, "base64url"));
    }
  } catch {
    // reported below
  }
  if (!secret || secret.length !== SECRET_BYTES) {
    throw new UsageError(`${path} is not a vat user key (make one with: vat keygen --user)`);
  }
  return deriveUserKey(secret, path);
}

/** The keys of `secret` (exported for tests). */
export function deriveUserKey(secret: Uint8Array, path = "(memory)"): UserKey {
  const derive = (label: string) =>
    new Uint8Array(hkdfSync("sha256", secret, new Uint8Array(0), `vat-user-key-v1 ${label}`, 32));
  return {
    path,
    chunkKey: derive("chunks"),
    nameKey: derive("names"),
    signingKey: ed25519FromSeed(derive("signing")),
  };
}

/** The ed25519 key whose 32-byte seed is `seed`. */
export function ed25519FromSeed(seed: Uint8Array): SigningKey {
  const der = new Uint8Array(ED25519_PKCS8_PREFIX.length + seed.length);
  der.set(ED25519_PKCS8_PREFIX);
  der.set(seed, ED25519_PKCS8_PREFIX.length);
  const privateKey = createPrivateKey({ key: Buffer.from(der), format: "der", type: "pkcs8" });
  const jwk = createPublicKey(privateKey).export({ format: "jwk" });
  return { privateKey, publicKeyId: `ed25519:${jwk.x}` };
}
