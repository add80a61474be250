/**
 * A user's key slots (docs/USERS.md, "Key slots"): their user key's 32-byte secret,
 * wrapped (AES-256-GCM) by a key derived from a password or from a recovery key, with
 * the KDF's parameters and the public half of the login key beside it. The slots file
 * is signed by an administrator (`vat user add`) or by the user's own key (`vat user
 * passwd`), so a password change needs no administrator.
 *
 * @module
 */

import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { IntegrityError } from "../errors.ts";
import {
  checkKdfParams,
  deriveSlotKeys,
  type KdfParams,
  newKdfParams,
  type SlotKeys,
} from "../auth/kdf.ts";
import type { SigningKey } from "../auth/signing_key.ts";
import { openObject, signObject } from "./signed_object.ts";

export const SLOTS_CONTEXT = "vat-key-slots-v1\n";

/** What unlocks a slot. */
export type SlotKind = "password" | "recovery";

/** One slot. */
export interface KeySlot {
  kind: SlotKind;
  kdf: KdfParams;
  /** The login key's public id: `vat serve` checks login challenges against it. */
  loginKey: string;
  /** 12 bytes, base64url. */
  nonce: string;
  /** AES-256-GCM ciphertext and tag of the 32-byte user secret, base64url. */
  wrapped: string;
}

/** The slots file's payload. */
export interface KeySlots {
  format: 1;
  directoryId: string;
  name: string;
  /** The user key's public id; a slot that unwraps a secret of another key is refused. */
  userKey: string;
  /** Grows with every rewrite. */
  serial: number;
  updatedAt: string;
  slots: KeySlot[];
}

function _aad(directoryId: string, name: string, kind: SlotKind): Uint8Array {
  return new TextEncoder().encode(`vat-key-slot-v1\n${directoryId}\n${name}\n${kind}`);
}

/** Wraps `secret` under `password` in a new slot. */
export async function makeSlot(
  secret: Uint8Array,
  password: string,
  kind: SlotKind,
  context: { directoryId: string; name: string },
  logN?: number,
): Promise<KeySlot> {
  const kdf = newKdfParams(logN);
  const keys = await deriveSlotKeys(password, kdf);
  const nonce = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", keys.wrapKey, nonce);
  cipher.setAAD(_aad(context.directoryId, context.name, kind));
  const wrapped = Buffer.concat([cipher.update(secret), cipher.final(), cipher.getAuthTag()]);
  return {
    kind,
    kdf,
    loginKey: keys.loginKey.publicKeyId,
    nonce: nonce.toString("base64url"),
    wrapped: wrapped.toString("base64url"),
  };
}

/**
 * Test-decrypts `slot` with `password`: the user secret, or null when the password is
 * not this slot's. Throws `IntegrityError` for parameters outside the floor and cap.
 */
export async function openSlot(
  slot: KeySlot,
  password: string,
  context: { directoryId: string; name: string },
): Promise<Uint8Array | null> {
  const keys = await deriveSlotKeys(password, checkKdfParams(slot.kdf, `${slot.kind} slot`));
  return unwrapSlot(slot, keys, context);
}

/** Unwraps `slot` with keys already derived; null when they are not its keys. */
export function unwrapSlot(
  slot: KeySlot,
  keys: SlotKeys,
  context: { directoryId: string; name: string },
): Uint8Array | null {
  if (keys.loginKey.publicKeyId !== slot.loginKey) return null;
  const blob = Buffer.from(slot.wrapped, "base64url");
  if (blob.length !== 32 + 16) return null;
  try {
    const decipher = createDecipheriv(
      "aes-256-gcm",
      keys.wrapKey,
      Buffer.from(slot.nonce, "base64url"),
    );
    decipher.setAAD(_aad(context.directoryId, context.name, slot.kind));
    decipher.setAuthTag(blob.subarray(32));
    return new Uint8Array(Buffer.concat([decipher.update(blob.subarray(0, 32)), decipher.final()]));
  } catch {
    return null;
  }
}

/** The slots file's signed bytes. */
export function signSlots(slots: KeySlots, key: SigningKey): Uint8Array {
  return signObject(SLOTS_CONTEXT, slots, key);
}

/**
 * Opens a slots file: signed by an administrator or by the user key the entry names,
 * of this directory, user and user key, each slot's KDF parameters within bounds.
 */
export function openSlots(
  bytes: Uint8Array,
  expect: { directoryId: string; name: string; userKey: string; adminKeys: readonly string[] },
): KeySlots {
  const what = `the key slots of ${expect.name}`;
  const { payload: p } = openObject(
    bytes,
    SLOTS_CONTEXT,
    [...expect.adminKeys, expect.userKey],
    what,
  );
  const fail = (field: string) => new IntegrityError(`${what} are invalid: ${field}`);
  if (p.format !== 1) throw fail("format");
  if (p.directoryId !== expect.directoryId) throw fail("they belong to another directory");
  if (p.name !== expect.name) throw fail(`they are the slots of ${JSON.stringify(p.name)}`);
  if (p.userKey !== expect.userKey) throw fail("they wrap another user key than the entry's");
  if (!Number.isSafeInteger(p.serial) || (p.serial as number) < 1) throw fail("serial");
  if (!Array.isArray(p.slots) || p.slots.length === 0 || p.slots.length > 16) throw fail("slots");
  for (const s of p.slots as KeySlot[]) {
    if (s?.kind !== "password" && s?.kind !== "recovery") throw fail("slot kind");
    checkKdfParams(s.kdf, `${what}, ${s.kind} slot`);
    if (
      typeof s.loginKey !== "string" || typeof s.nonce !== "string" ||
      typeof s.wrapped !== "string"
    ) throw fail("slot fields");
  }
  return p as unknown as KeySlots;
}

/** A new recovery key: 20 random bytes as 8 groups of 4 base32 characters. */
export function newRecoveryKey(): string {
  const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  const bytes = randomBytes(20);
  let bits = 0, value = 0, out = "";
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join("-");
}

/** A recovery key as typed: upper case, without spaces. */
export function normaliseRecoveryKey(text: string): string {
  return text.trim().toUpperCase().replace(/\s+/g, "");
}
