/**
 * Announcements that let `gc` run without a lock that stops publishers
 * (docs/FORMAT.md, "Garbage collection"). A publisher or a gc run writes
 * `activity/<kind>-<nonce>` once when it starts (its modification time is the start)
 * and keeps `activity/<kind>-<nonce>.alive` fresh while it runs. Every time compared
 * is the store's own modification time, so the clocks of publishers and collectors
 * never matter.
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
    JSON.stringify({ kind, pid: Deno.pid, host: Deno.hostname(), at: new Date().toISOString() }),
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
 * The store's idea of "now": refreshes the announcement's `.alive` object and returns
 * its modification time.
 */
export async function storeNow(store: Store, announcement: { key: string }): Promise<number> {
  const key = `${announcement.key}.alive`;
  await store.put(key, new Uint8Array(0));
  return (await store.stat(key))?.modifiedMs ?? Date.now();
}
