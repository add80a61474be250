/**
 * Signed key lists (docs/FORMAT.md, "Key lists"): how a repository's set of publisher
 * keys changes in a way a VAT can check. `keys/N.json` (N = 1, 2, ...) is a signed
 * envelope listing the publisher keys from then on, signed by a key of list N-1 (list
 * 0 being the keys a VAT pinned: `repo.json`'s on first use, or an administrator's).
 * A VAT follows the chain from the list it pinned, as TUF clients follow `root.json`
 * versions, so `repo.json`, which anyone who can write the server rewrites, never
 * changes what it trusts.
 *
 * @module
 */

import { ConflictError, IntegrityError, NotFoundError, PermanentError } from "../errors.ts";
import { describeKey, keyFingerprint, type SigningKey } from "../auth/signing_key.ts";
import { openEnvelope, signEnvelope } from "./signed_envelope.ts";
import type { Store } from "./store.ts";

const SIGNING_CONTEXT = "vat-keys-v1\n";
/** At most this many keys in one list. */
const MAX_KEYS = 64;
/** At most this many lists are followed in one go (an endless chain is refused). */
const MAX_STEPS = 1000;

/** The object key of key list `n`. */
export const keyListKey = (n: number) => `keys/${n}.json`;

/** The payload of `keys/N.json`. */
export interface KeyList {
  format: 1;
  repoId: string;
  /** N: the list's place in the chain. */
  sequence: number;
  /** The publisher keys from this list on. */
  publisherKeys: string[];
  /**
   * The newest version when the list was signed: a key this list drops stays valid for
   * the versions up to it (they were published while it was trusted), never later ones.
   */
  latest: number;
  createdAt: string;
  /** The key of list N-1 that signed this one. */
  signer: string;
}

/** A key a list dropped, still valid for the versions up to `upTo`. */
export interface RetiredKey {
  key: string;
  upTo: number;
}

/** The keys a VAT trusts for a repository, and the list they came from (0: the pin). */
export interface KeyPins {
  sequence: number;
  keys: string[];
  /** Keys dropped by the lists followed so far. */
  retired: RetiredKey[];
}

/** Signs a key list with `key`. */
export function signKeyList(list: KeyList, key: SigningKey): Uint8Array {
  return signEnvelope(JSON.stringify(list, null, 2), SIGNING_CONTEXT, key);
}

/**
 * Parses `keys/N.json` and checks it against the keys trusted before it (`null`: take
 * any signature by a key the list itself names, for trust on first use). Throws
 * `IntegrityError` naming what failed, and the signing key when it is not trusted.
 */
export function openKeyList(
  bytes: Uint8Array,
  expect: { repoId: string; sequence: number; trustedKeys: readonly string[] | null },
): KeyList {
  const what = `key list ${expect.sequence} (${keyListKey(expect.sequence)})`;
  let trusted = expect.trustedKeys;
  if (trusted === null) {
    // First use: the list is trusted as repo.json would be, but it must still be
    // signed by one of its own keys (it is a well-formed statement of a publisher).
    try {
      const keys = JSON.parse(JSON.parse(new TextDecoder().decode(bytes)).payload).publisherKeys;
      trusted = Array.isArray(keys) ? keys.filter((k) => typeof k === "string") : [];
    } catch {
      trusted = [];
    }
  }
  const { payload, signer } = openEnvelope(bytes, SIGNING_CONTEXT, trusted, what);
  let list: KeyList;
  try {
    list = JSON.parse(payload);
  } catch (err) {
    throw new IntegrityError(`${what}: payload is not valid JSON`, { cause: err });
  }
  if (list?.format !== 1) throw new IntegrityError(`${what}: unsupported format`);
  if (list.repoId !== expect.repoId) {
    throw new IntegrityError(`${what}: it belongs to another repository`);
  }
  if (list.sequence !== expect.sequence) {
    throw new IntegrityError(`${what}: it claims to be key list ${list.sequence}`);
  }
  if (list.signer !== signer) throw new IntegrityError(`${what}: signer and signature differ`);
  if (
    !Array.isArray(list.publisherKeys) || list.publisherKeys.length === 0 ||
    list.publisherKeys.length > MAX_KEYS || !list.publisherKeys.every(_isKeyId)
  ) {
    throw new IntegrityError(`${what}: publisherKeys must list 1 to ${MAX_KEYS} ed25519 keys`);
  }
  if (!Number.isSafeInteger(list.latest) || list.latest < 0) {
    throw new IntegrityError(`${what}: latest is not a version number`);
  }
  return list;
}

/** How `followKeyLists` treats lists that trusted keys did not sign. */
export type FollowMode =
  /** Every next list must be signed by a key of the one before: stop at the first that is not. */
  | "strict"
  /** The first list is taken as it is (trust on first use), then strict. */
  | "first-use"
  /**
   * Lists not signed by the pinned keys are passed over (they predate keys an
   * administrator pinned, or are forged); one signed by them is followed.
   */
  | "administrator";

/** What following the chain found. */
export interface FollowResult {
  pins: KeyPins;
  /** Why following stopped early (a list that is not signed by a trusted key), or null. */
  problem: string | null;
}

/**
 * Follows the key lists of `store` after `from.sequence`, as far as they are signed
 * by the keys trusted at each step. Never throws for a bad list: it stops there and
 * says why in `problem`, keeping what it trusted before; throws only when the store
 * fails.
 */
export async function followKeyLists(
  store: Store,
  repoId: string,
  from: KeyPins,
  mode: FollowMode = "strict",
): Promise<FollowResult> {
  let pins: KeyPins = {
    sequence: from.sequence,
    keys: [...from.keys],
    retired: [...from.retired],
  };
  let first = true;
  for (let n = from.sequence + 1, steps = 0; steps < MAX_STEPS; n++, steps++) {
    let bytes: Uint8Array;
    try {
      bytes = await store.get(keyListKey(n));
    } catch (err) {
      if (err instanceof NotFoundError) return { pins, problem: null };
      throw err;
    }
    try {
      const list = openKeyList(bytes, {
        repoId,
        sequence: n,
        trustedKeys: mode === "first-use" && first ? null : pins.keys,
      });
      pins = { sequence: n, keys: list.publisherKeys, retired: _retire(pins, list) };
    } catch (err) {
      if (!(err instanceof IntegrityError)) throw err;
      if (mode !== "administrator") {
        return {
          pins,
          problem: `${err.message}; this VAT keeps trusting ${_describeAll(pins.keys)}`,
        };
      }
      pins = { ...pins, sequence: n };
    }
    first = false;
  }
  return {
    pins,
    problem: `more than ${MAX_STEPS} key lists follow list ${from.sequence}; ` +
      `the rest are not followed now`,
  };
}

/**
 * The newest key list of `store` (following the chain from the start, trusting the
 * first list), or null when the repository has none (its keys are repo.json's).
 */
export async function newestKeyList(
  store: Store,
  repoId: string,
): Promise<KeyPins | null> {
  const { pins, problem } = await followKeyLists(
    store,
    repoId,
    { sequence: 0, keys: [], retired: [] },
    "first-use",
  );
  if (problem) {
    throw new IntegrityError(`the key lists of ${store.location} are broken: ${problem}`);
  }
  return pins.sequence === 0 ? null : pins;
}

/**
 * Appends key list N+1 = `keys`, signed by `signer`, who must be a key of list N (or
 * of `repo.json` when there is no list yet); `latest` is the newest version now.
 * Returns the new list. The create is conditional: a concurrent change makes this
 * throw `ConflictError` (retry).
 */
export async function appendKeyList(
  store: Store,
  repoId: string,
  current: KeyPins,
  keys: string[],
  signer: SigningKey,
  latest: number,
): Promise<KeyList> {
  if (!current.keys.includes(signer.publicKeyId)) {
    throw new PermanentError(
      `${describeKey(signer.publicKeyId)} is not a publisher key of ${store.location}: ` +
        `only a current publisher key (${_describeAll(current.keys)}) can change the keys`,
    );
  }
  const list: KeyList = {
    format: 1,
    repoId,
    sequence: current.sequence + 1,
    publisherKeys: keys,
    latest,
    createdAt: new Date().toISOString(),
    signer: signer.publicKeyId,
  };
  if (!(await store.create(keyListKey(list.sequence), signKeyList(list, signer)))) {
    throw new ConflictError(
      `key list ${list.sequence} of ${store.location} was written by someone else meanwhile; retry`,
    );
  }
  return list;
}

/** The retired keys after `list` follows `before`: what it drops joins, what it lists leaves. */
function _retire(before: KeyPins, list: KeyList): RetiredKey[] {
  const dropped = before.keys.filter((k) => !list.publisherKeys.includes(k))
    .map((key) => ({ key, upTo: list.latest }));
  return [...before.retired.filter((r) => !list.publisherKeys.includes(r.key)), ...dropped];
}

function _isKeyId(k: unknown): boolean {
  if (typeof k !== "string") return false;
  try {
    keyFingerprint(k);
    return true;
  } catch {
    return false;
  }
}

function _describeAll(keys: readonly string[]): string {
  return keys.length ? keys.map(describeKey).join(", ") : "no key";
}
