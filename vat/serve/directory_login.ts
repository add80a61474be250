/**
 * `vat serve` as a directory's server (docs/USERS.md, "Login on vat serve"): key slots
 * are never served to a plain GET; a VAT gets them only after proving knowledge of
 * the login key derived from the password (challenge-response), with failed attempts
 * slowed per user and per client. A user may rewrite their own slots with a request
 * signed by their user key. The protocol is in docs/HTTP.md, "Directories".
 *
 * @module
 */

import type { Handler, MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { createHmac, randomBytes } from "node:crypto";
import { verifyBytes } from "../auth/signing_key.ts";
import { DEFAULT_LOG_N, type KdfParams, MIN_LOG_N } from "../auth/kdf.ts";
import { openEntry } from "../directory/user_entry.ts";
import { type KeySlot, openSlots } from "../directory/key_slots.ts";
import { loginMessage } from "../directory/login_message.ts";
import { LoginThrottle } from "./login_throttle.ts";
import type { ServeEnv } from "./serve_env.ts";

/** A directory under the served root. */
interface ServedDirectory {
  /** Its root, relative to the served root ("" for the root itself). */
  prefix: string;
  id: string;
  adminKeys: string[];
}

const SLOTS_PATH = /^users\/([a-z][a-z0-9._-]{0,31})\/slots\.json$/;
const MAX_LOGIN_BODY = 4096;
const CHALLENGE_TTL_MS = 60_000;

/** The directory whose repo.json governs `key` (the nearest ancestor's), if any. */
async function _directoryOf(root: string, key: string): Promise<ServedDirectory | null> {
  const segments = key === "" ? [] : key.split("/");
  for (let depth = segments.length; depth >= 0; depth--) {
    const prefix = segments.slice(0, depth).join("/");
    let text: string;
    try {
      text = await Deno.readTextFile(`${root}/${prefix === "" ? "" : prefix + "/"}repo.json`);
    } catch (err) {
      if (
        err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory ||
        err instanceof Deno.errors.IsADirectory
      ) continue;
      throw err;
    }
    try {
      const config = JSON.parse(text);
      if (config?.kind !== "directory" || !Array.isArray(config.publisherKeys)) return null;
      return { prefix, id: String(config.id), adminKeys: config.publisherKeys.map(String) };
    } catch {
      return null;
    }
  }
  return null;
}

function _relative(dir: ServedDirectory, key: string): string {
  return dir.prefix === "" ? key : key.slice(dir.prefix.length + 1);
}

async function _readOrNull(path: string): Promise<Uint8Array | null> {
  try {
    return await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
      return null;
    }
    throw err;
  }
}

/** Middleware for GET: a directory's key slots are answered 403 (log in instead). */
export function hideKeySlots(root: string): MiddlewareHandler<ServeEnv> {
  return async function hideKeySlots(c, next) {
    const key = c.get("objectPath").key;
    if (key.endsWith("/slots.json")) {
      const dir = await _directoryOf(root, key);
      if (dir && SLOTS_PATH.test(_relative(dir, key))) {
        throw new HTTPException(403, {
          message: "key slots are given out only after a login (POST ?login-start, ?login)",
        });
      }
    }
    await next();
  };
}

/**
 * Whether `keyId` may write `key` as a user rewriting their own key slots: `key` is
 * `users/NAME/slots.json` of a directory and `keyId` is the user key of NAME's entry
 * (an entry its administrators signed).
 */
export async function userMayWriteSlots(root: string, key: string, keyId: string) {
  const dir = await _directoryOf(root, key);
  const m = dir && SLOTS_PATH.exec(_relative(dir, key));
  if (!dir || !m) return false;
  const bytes = await _readOrNull(
    `${root}/${dir.prefix ? dir.prefix + "/" : ""}users/${m[1]}/entry.json`,
  );
  if (!bytes) return false;
  try {
    const entry = openEntry(bytes, { directoryId: dir.id, name: m[1], adminKeys: dir.adminKeys });
    return entry.userKey === keyId;
  } catch {
    return false;
  }
}

/** Options of `directoryLogin`. */
export interface DirectoryLoginOptions {
  root: string;
  nowMs?: () => number;
}

/**
 * `POST DIR/?login-start {"name"}` → `{"challenge", "slots": [{kind, kdf}]}`;
 * `POST DIR/?login {"name", "kind", "challenge", "signature"}` → `{"entry", "slots"}`
 * (base64url of the stored objects), 401 for a wrong name or password (one message for
 * both), 429 with `Retry-After` while that user or client is slowed down.
 */
export function directoryLogin(options: DirectoryLoginOptions): Handler<ServeEnv> {
  const nowMs = options.nowMs ?? Date.now;
  const secret = randomBytes(32);
  const challenges = new Map<string, number>();
  const throttle = new LoginThrottle({ nowMs });
  return async function directoryLogin(c) {
    const path = c.get("objectPath");
    const start = path.query.has("login-start");
    if (!start && !path.query.has("login")) {
      c.header("Allow", "GET, HEAD, PUT, DELETE");
      throw new HTTPException(405, { message: "POST is only for logins (?login-start, ?login)" });
    }
    const dir = path.isDirectory ? await _directoryOf(options.root, path.key) : null;
    if (!dir || dir.prefix !== path.key) {
      throw new HTTPException(404, { message: `${path.target} is not a directory of users` });
    }
    const body = await _readJson(c.req.raw);
    const name = typeof body.name === "string" ? body.name : "";
    if (!/^[a-z][a-z0-9._-]{0,31}$/.test(name)) {
      throw new HTTPException(400, { message: 'give a user name as {"name": "..."}' });
    }
    const base = `${options.root}/${dir.prefix ? dir.prefix + "/" : ""}users/${name}`;
    const client = _clientOf(c.env?.remoteAddr);
    const now = nowMs();
    for (const [k, t] of challenges) if (t < now) challenges.delete(k);

    // Checked at the start too, so a slowed client learns it before it spends a KDF.
    const wait = throttle.waitMs([`user:${dir.id}:${name}`, `client:${client}`]);
    if (wait > 0) {
      c.header("Retry-After", String(Math.ceil(wait / 1000)));
      return c.json({
        error: `too many failed logins; try again in ${Math.ceil(wait / 1000)} s`,
        retryAfterMs: wait,
      }, 429);
    }
    if (start) {
      if (challenges.size > 100_000) {
        throw new HTTPException(503, { message: "too many logins in progress; try again" });
      }
      const challenge = randomBytes(24).toString("base64url");
      challenges.set(`${dir.id}\n${name}\n${challenge}`, now + CHALLENGE_TTL_MS);
      const slots = await _slotsOf(base, dir, name);
      // An unknown user gets parameters that look like a real user's and stay the same
      // on every ask, so the answer does not tell who has an account.
      const kdfOf = (kind: string): KdfParams => ({
        alg: "scrypt",
        // As `vat user add` makes them: recovery slots at the floor.
        logN: kind === "recovery" ? MIN_LOG_N : DEFAULT_LOG_N,
        r: 8,
        p: 1,
        salt: createHmac("sha256", secret).update(`${dir.id}\n${name}\n${kind}`).digest()
          .subarray(0, 16).toString("base64url"),
      });
      const shown = slots
        ? slots.map((s) => ({ kind: s.kind, kdf: s.kdf }))
        : ["password", "recovery"].map((kind) => ({ kind, kdf: kdfOf(kind) }));
      return c.json({ directoryId: dir.id, challenge, slots: shown });
    }

    const challenge = typeof body.challenge === "string" ? body.challenge : "";
    const challengeKey = `${dir.id}\n${name}\n${challenge}`;
    const fresh = challenges.has(challengeKey);
    challenges.delete(challengeKey);
    const slots = await _slotsOf(base, dir, name);
    const slot = slots?.find((s) => s.kind === body.kind);
    const ok = fresh && slot !== undefined && typeof body.signature === "string" &&
      verifyBytes(
        slot.loginKey,
        loginMessage(dir.id, name, slot.kind, challenge),
        body.signature,
      );
    if (!ok) {
      throttle.failed([`user:${dir.id}:${name}`, `client:${client}`]);
      return c.json({ error: "wrong name or password" }, 401);
    }
    throttle.succeeded([`user:${dir.id}:${name}`]);
    const entry = await _readOrNull(`${base}/entry.json`);
    const slotsBytes = await _readOrNull(`${base}/slots.json`);
    if (!entry || !slotsBytes) {
      throw new HTTPException(404, { message: `user ${name} was removed meanwhile` });
    }
    c.header("Cache-Control", "no-store");
    return c.json({
      entry: Buffer.from(entry).toString("base64url"),
      slots: Buffer.from(slotsBytes).toString("base64url"),
    });
  };
}

/** The slots of `name` as the server reads them (signature checked), or null. */
async function _slotsOf(
  base: string,
  dir: ServedDirectory,
  name: string,
): Promise<KeySlot[] | null> {
  const entryBytes = await _readOrNull(`${base}/entry.json`);
  const slotsBytes = await _readOrNull(`${base}/slots.json`);
  if (!entryBytes || !slotsBytes) return null;
  try {
    const entry = openEntry(entryBytes, { directoryId: dir.id, name, adminKeys: dir.adminKeys });
    return openSlots(slotsBytes, {
      directoryId: dir.id,
      name,
      userKey: entry.userKey,
      adminKeys: dir.adminKeys,
    }).slots;
  } catch {
    return null;
  }
}

async function _readJson(request: Request): Promise<Record<string, unknown>> {
  const declared = Number(request.headers.get("content-length") ?? NaN);
  if (declared > MAX_LOGIN_BODY) {
    throw new HTTPException(413, { message: `a login body is at most ${MAX_LOGIN_BODY} bytes` });
  }
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const part of request.body ?? []) {
    total += part.length;
    if (total > MAX_LOGIN_BODY) {
      throw new HTTPException(413, { message: `a login body is at most ${MAX_LOGIN_BODY} bytes` });
    }
    parts.push(part);
  }
  try {
    const value = JSON.parse(new TextDecoder().decode(Buffer.concat(parts)));
    if (typeof value === "object" && value !== null) return value;
  } catch {
    // below
  }
  throw new HTTPException(400, { message: "a login body is a JSON object" });
}

function _clientOf(addr: Deno.Addr | undefined): string {
  return addr && "hostname" in addr ? addr.hostname : "local";
}
