/**
 * The password KDF of key slots (docs/USERS.md, "Key slots"): scrypt (node:crypto,
 * OpenSSL, run on libuv's thread pool so the daemon stays responsive), with its
 * parameters stored beside the salt in the slot. `checkKdfParams` bounds them from both
 * sides: a floor, so a hostile directory cannot make a VAT derive a cheaply guessable
 * login key from a password (and send proof of it), and a cap, so it cannot make a VAT
 * fill unbounded memory or spin for minutes. `bench/kdf.ts` measured the choice.
 *
 * One KDF output is split by HKDF into a login secret (an ed25519 seed whose public key
 * the server checks challenges against) and a wrapping key that never leaves the VAT.
 *
 * @module
 */

import { hkdfSync, randomBytes, scrypt } from "node:crypto";
import { IntegrityError } from "../errors.ts";
import { ed25519FromSeed } from "./user_key.ts";
import type { SigningKey } from "./signing_key.ts";

/** scrypt's parameters as a slot stores them. */
export interface KdfParams {
  alg: "scrypt";
  /** log2 of scrypt's N. */
  logN: number;
  r: number;
  p: number;
  /** 16 random bytes, base64url. */
  salt: string;
}

/** What one derivation gives. */
export interface SlotKeys {
  /** Proves knowledge of the password to `vat serve` (challenge-response). */
  loginKey: SigningKey;
  /** AES-256-GCM key that wraps the user key; never leaves the VAT. */
  wrapKey: Uint8Array;
}

/** The default cost: about 0.4 s and 128 MiB here (bench/kdf.ts). */
export const DEFAULT_LOG_N = 17;
/** Below this a slot (or a server's login parameters) is refused: 32 MiB, ~0.1 s. */
export const MIN_LOG_N = 15;
/** Above this it is refused: 1 GiB of memory at r=8. */
export const MAX_LOG_N = 20;
const MAX_MEMORY_BYTES = 1024 ** 3;

/** Fresh parameters with a new salt. */
export function newKdfParams(logN = DEFAULT_LOG_N): KdfParams {
  const params: KdfParams = {
    alg: "scrypt",
    logN,
    r: 8,
    p: 1,
    salt: randomBytes(16).toString("base64url"),
  };
  return checkKdfParams(params, "new KDF parameters");
}

/**
 * Returns `value` as `KdfParams` if it is within the floor and the cap; throws
 * `IntegrityError` naming `what` otherwise.
 */
export function checkKdfParams(value: unknown, what: string): KdfParams {
  const v = value as Partial<KdfParams> | null;
  const fail = (why: string) => new IntegrityError(`${what}: ${why}; refused`);
  if (typeof v !== "object" || v === null || v.alg !== "scrypt") {
    throw fail(`KDF ${JSON.stringify(v?.alg)} is not scrypt`);
  }
  const { logN, r, p, salt } = v;
  if (!Number.isInteger(logN) || !Number.isInteger(r) || !Number.isInteger(p)) {
    throw fail("scrypt parameters are not integers");
  }
  if (logN! < MIN_LOG_N) {
    throw fail(`scrypt work factor 2^${logN} is below the floor 2^${MIN_LOG_N} (a downgrade)`);
  }
  if (logN! > MAX_LOG_N || r! < 8 || r! > 32 || p! < 1 || p! > 4) {
    throw fail(`scrypt work factor 2^${logN}, r=${r}, p=${p} is above the cap`);
  }
  if (128 * r! * 2 ** logN! > MAX_MEMORY_BYTES) {
    throw fail(`scrypt would need ${(128 * r! * 2 ** logN!) / 2 ** 20} MiB, above the cap`);
  }
  if (typeof salt !== "string" || !/^[A-Za-z0-9_-]{22,64}$/.test(salt)) {
    throw fail("the salt is not 16 to 48 bytes of base64url");
  }
  return { alg: "scrypt", logN: logN!, r: r!, p: p!, salt };
}

/** Derives a slot's login key and wrapping key from a password (checked params only). */
export async function deriveSlotKeys(password: string, params: KdfParams): Promise<SlotKeys> {
  checkKdfParams(params, "KDF parameters");
  const N = 2 ** params.logN;
  return await new Promise((resolve, reject) => {
    scrypt(
      password.normalize("NFC"),
      Buffer.from(params.salt, "base64url"),
      64,
      { N, r: params.r, p: params.p, maxmem: 128 * params.r * N * params.p + 2 ** 24 },
      (err, out) => {
        if (err) return reject(err);
        const split = (label: string) =>
          new Uint8Array(hkdfSync("sha256", out, new Uint8Array(0), `vat-slot-v1 ${label}`, 32));
        resolve({ loginKey: ed25519FromSeed(split("login")), wrapKey: split("wrap") });
      },
    );
  });
}
