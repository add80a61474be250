/**
 * A VAT's side of logging in against a directory (docs/USERS.md, "Logging in"): on
 * `vat serve`, challenge-response with the slot's login key, after which the server
 * hands out the entry and the key slots; on a file, S3 or static HTTP directory, the
 * slots are read from the storage. Either way the password is tried on the slot here,
 * on the VAT: a key slot that unwraps is the only proof of the password.
 *
 * @module
 */

import { checkKdfParams, deriveSlotKeys } from "../auth/kdf.ts";
import { signBytes } from "../auth/signing_key.ts";
import { IntegrityError, NotFoundError, TransientError, VatError } from "../errors.ts";
import { HttpStore } from "../repo/store_http.ts";
import { readStreamCapped, transportOf } from "../repo/store.ts";
import { MAX_DIRECTORY_OBJECT_BYTES } from "./signed_object.ts";
import type { Directory } from "./directory.ts";
import { type KeySlots, openSlot, type SlotKind, unwrapSlot } from "./key_slots.ts";
import { loginMessage } from "./login_message.ts";
import type { UserEntry } from "./user_entry.ts";

/** A login refused: wrong name or password, or slowed down. */
export class LoginRefusedError extends VatError {
  /** How long to wait before the next attempt, when slowed down. */
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs = 0) {
    super(message);
    this.retryAfterMs = retryAfterMs;
  }
}

/** The one message for any wrong name or password. */
export const WRONG_NAME_OR_PASSWORD = "wrong name or password";

/** What an online login gives. */
export interface OnlineLogin {
  entry: UserEntry;
  entryBytes: Uint8Array;
  slots: KeySlots;
  slotsBytes: Uint8Array;
  /** The user key's secret. */
  secret: Uint8Array;
  /** How the slots were obtained. */
  via: "server" | "storage";
}

/**
 * Logs `name` in with `secret` (a password, or a recovery key with `kind: "recovery"`).
 * Throws `LoginRefusedError` for a wrong name or password, `IntegrityError` for objects
 * not signed as they must be or KDF parameters outside the bounds, and transport errors
 * (`TransientError`) when the directory cannot be reached.
 */
export async function loginOnline(
  directory: Directory,
  name: string,
  password: string,
  kind: SlotKind = "password",
): Promise<OnlineLogin> {
  const transport = transportOf(directory.store);
  if (transport instanceof HttpStore && transport.serverKind === "vat-serve") {
    return await _loginOnServer(directory, name, password, kind);
  }
  const entryBytes = await directory.entryBytes(name);
  if (!entryBytes) throw new LoginRefusedError(WRONG_NAME_OR_PASSWORD);
  const entry = directory.openEntry(name, entryBytes);
  let slotsBytes: Uint8Array;
  try {
    slotsBytes = await directory.slotsBytes(name);
  } catch (err) {
    if (err instanceof NotFoundError) throw new LoginRefusedError(WRONG_NAME_OR_PASSWORD);
    throw err;
  }
  const slots = directory.openSlots(entry, slotsBytes);
  const secret = await unlockSlots(slots, password, kind);
  return { entry, entryBytes, slots, slotsBytes, secret, via: "storage" };
}

/** Test-decrypts the `kind` slot of `slots` with `password`; refuses a wrong one. */
export async function unlockSlots(
  slots: KeySlots,
  password: string,
  kind: SlotKind = "password",
): Promise<Uint8Array> {
  const slot = slots.slots.find((s) => s.kind === kind);
  const secret = slot && await openSlot(slot, password, slots);
  if (!secret) throw new LoginRefusedError(WRONG_NAME_OR_PASSWORD);
  return secret;
}

async function _loginOnServer(
  directory: Directory,
  name: string,
  password: string,
  kind: SlotKind,
): Promise<OnlineLogin> {
  const base = directory.store.location;
  const start = await _post(`${base}?login-start`, { name }) as {
    challenge?: unknown;
    slots?: { kind: string; kdf: unknown }[];
  };
  const offered = Array.isArray(start.slots) ? start.slots.find((s) => s?.kind === kind) : null;
  if (typeof start.challenge !== "string" || !offered) {
    throw new LoginRefusedError(WRONG_NAME_OR_PASSWORD);
  }
  // The floor matters here most: a server offering cheap parameters would get a
  // cheaply guessable proof of the password back.
  const kdf = checkKdfParams(offered.kdf, `the login parameters ${base} offered for ${name}`);
  const keys = await deriveSlotKeys(password, kdf);
  const signature = signBytes(
    keys.loginKey,
    loginMessage(directory.id, name, kind, start.challenge),
  );
  const answer = await _post(`${base}?login`, {
    name,
    kind,
    challenge: start.challenge,
    signature,
  }) as { entry?: unknown; slots?: unknown };
  if (typeof answer.entry !== "string" || typeof answer.slots !== "string") {
    throw new IntegrityError(`${base} answered a login without the entry and key slots`);
  }
  const entryBytes = new Uint8Array(Buffer.from(answer.entry, "base64url"));
  const slotsBytes = new Uint8Array(Buffer.from(answer.slots, "base64url"));
  const entry = directory.openEntry(name, entryBytes);
  const slots = directory.openSlots(entry, slotsBytes);
  const slot = slots.slots.find((s) => s.kind === kind);
  const secret = slot && unwrapSlot(slot, keys, slots);
  if (!secret) throw new LoginRefusedError(WRONG_NAME_OR_PASSWORD);
  return { entry, entryBytes, slots, slotsBytes, secret, via: "server" };
}

const LOGIN_TIMEOUT_MS = 10_000;

/** The most of a login answer read: an entry and its key slots, base64url, and the JSON around. */
const _LOGIN_ANSWER_LIMIT_BYTES = 3 * MAX_DIRECTORY_OBJECT_BYTES;

async function _post(url: string, body: unknown): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(LOGIN_TIMEOUT_MS),
    });
  } catch (err) {
    throw new TransientError(`the directory ${url} cannot be reached: ${(err as Error).message}`, {
      cause: err,
    });
  }
  // An entry and its key slots (each at most MAX_DIRECTORY_OBJECT_BYTES) in base64url,
  // or an error: never more is read from the server.
  const text = new TextDecoder().decode(
    response.body
      ? await readStreamCapped(
        response.body,
        _LOGIN_ANSWER_LIMIT_BYTES,
        () =>
          new IntegrityError(
            `${url} answered a login with more than ${_LOGIN_ANSWER_LIMIT_BYTES} bytes`,
          ),
      )
      : new Uint8Array(0),
  );
  let value: Record<string, unknown> = {};
  try {
    value = JSON.parse(text);
  } catch {
    // judged by the status below
  }
  if (response.status === 401) throw new LoginRefusedError(WRONG_NAME_OR_PASSWORD);
  if (response.status === 429) {
    const ms = Number(value.retryAfterMs) || Number(response.headers.get("retry-after")) * 1000;
    throw new LoginRefusedError(String(value.error ?? "too many failed logins"), ms || 1000);
  }
  if (response.status >= 500) {
    throw new TransientError(`the directory ${url} answered ${response.status}`);
  }
  if (!response.ok) {
    throw new IntegrityError(
      `the directory ${url} refused the login: ${response.status} ${value.error ?? text}`,
    );
  }
  return value;
}
