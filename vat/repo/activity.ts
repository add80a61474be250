/**
 * Announcements that let `gc` run without a lock that stops publishers
 * (docs/FORMAT.md, "Garbage collection"). A publisher or a gc run writes
 * `activity/<kind>-<nonce>` once when it starts (its modification time is the start)
 * and keeps `activity/<kind>-<nonce>.alive` fresh while it runs. Every time compared
 * is the store's own modification time, so the clocks of publishers and collectors
 * never matter.
 *
 * An announcement's body says which process wrote it (its pid, host, boot and pid
 * namespace), so a process on the same machine can tell at once that the writer is
 * gone (`diedOnThisHost`) instead of waiting for the announcement to go stale.
 *
 * @module
 */

import { randomUUID } from "node:crypto";
import type { Store } from "./store.ts";

/** An announcement not refreshed for this long belongs to a process that died. */
export const ACTIVITY_STALE_MS = 10 * 60_000;
/** How often a running process refreshes its announcement. */
const REFRESH_MS = 60_000;

/** One announced activity. */
export interface Activity {
  key: string;
  kind: "publish" | "gc";
  /** When it started (the store's clock). */
  startedMs: number;
  /** When it last showed it is alive (the store's clock). */
  aliveMs: number;
}

/** An announcement held until `end()`. */
export interface Announcement {
  readonly key: string;
  /** When the store recorded the announcement (the store's clock). */
  readonly startedMs: number;
  end(): Promise<void>;
}

/** Writes an activity announcement and keeps it alive until `end()`. */
export async function announce(store: Store, kind: "publish" | "gc"): Promise<Announcement> {
  const key = `activity/${kind}-${randomUUID()}`;
  const body = new TextEncoder().encode(
    JSON.stringify({ kind, ..._processIdentity(), at: new Date().toISOString() }),
  );
  await store.put(key, body);
  const startedMs = (await store.stat(key))?.modifiedMs ?? Date.now();
  const timer = setInterval(() => {
    store.put(`${key}.alive`, body).catch(() => {});
  }, REFRESH_MS);
  Deno.unrefTimer(timer);
  return {
    key,
    startedMs,
    async end() {
      clearInterval(timer);
      await store.delete(`${key}.alive`).catch(() => {});
      await store.delete(key).catch(() => {});
    },
  };
}

/** Every activity the store holds whose process has not died. */
export async function listActivities(store: Store, nowMs: number): Promise<Activity[]> {
  if (!store.canList) return [];
  const found: Activity[] = [];
  for await (const key of store.list("activity/")) {
    const m = /^activity\/(publish|gc)-[0-9a-f-]+$/.exec(key);
    if (!m) continue;
    const start = await store.stat(key);
    if (!start) continue; // ended while we listed
    const alive = await store.stat(`${key}.alive`);
    const aliveMs = Math.max(start.modifiedMs, alive?.modifiedMs ?? 0);
    if (nowMs - aliveMs > ACTIVITY_STALE_MS) continue;
    found.push({ key, kind: m[1] as "publish" | "gc", startedMs: start.modifiedMs, aliveMs });
  }
  return found;
}

/**
 * Whether `activity` was announced by a process of this machine (same host name, same
 * boot, same pid namespace, so its pid names a process here) that no longer exists:
 * it died without ending its announcement (killed, crashed). False whenever that
 * cannot be known for sure, including when its pid is in use (maybe by another
 * process: then the announcement goes stale in its own time).
 */
export async function diedOnThisHost(store: Store, activity: Activity): Promise<boolean> {
  let body: { pid?: unknown; host?: unknown; bootId?: unknown; pidNamespace?: unknown };
  try {
    body = JSON.parse(new TextDecoder().decode(await store.get(activity.key)));
  } catch {
    return false; // gone meanwhile, or not ours to judge
  }
  const self = _processIdentity();
  if (
    self.bootId === null || self.pidNamespace === null || body.host !== self.host ||
    body.bootId !== self.bootId || body.pidNamespace !== self.pidNamespace ||
    typeof body.pid !== "number" || !Number.isInteger(body.pid) || body.pid <= 0 ||
    body.pid === self.pid
  ) {
    return false;
  }
  try {
    await Deno.stat(`/proc/${body.pid}`);
    return false;
  } catch (err) {
    return err instanceof Deno.errors.NotFound;
  }
}

/** Removes the announcement of a process known to have died (see `diedOnThisHost`). */
export async function removeAnnouncement(store: Store, key: string): Promise<void> {
  await store.delete(`${key}.alive`);
  await store.delete(key);
}

let _identity: ReturnType<typeof _readIdentity> | undefined;

/** Who this process is, for its announcements (read once). */
function _processIdentity() {
  _identity ??= _readIdentity();
  return _identity;
}

function _readIdentity() {
  const read = (what: () => string) => {
    try {
      return what().trim();
    } catch {
      return null; // not Linux, or /proc not mounted: never judged dead by pid
    }
  };
  return {
    pid: Deno.pid,
    host: Deno.hostname(),
    bootId: read(() => Deno.readTextFileSync("/proc/sys/kernel/random/boot_id")),
    pidNamespace: read(() => Deno.readLinkSync("/proc/self/ns/pid")),
  };
}

/**
 * The store's idea of "now": refreshes the announcement's `.alive` object and returns
 * its modification time.
 */
export async function storeNow(store: Store, announcement: { key: string }): Promise<number> {
  const key = `${announcement.key}.alive`;
  await store.put(key, new Uint8Array(0));
  return (await store.stat(key))?.modifiedMs ?? Date.now();
}
