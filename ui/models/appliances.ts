/// <reference lib="dom" />
/**
 * The appliances, live: the daemon's event stream (`/api/events`, event `status`) feeds
 * `appliances`; the operations are named actions whose failures land in `actionError`.
 *
 * @module
 */

import { signal } from "@preact/signals";
import { api, ApiError, type ApplianceStatus, call, type ResponseLike } from "../api.ts";
import { sessionLost } from "./session.ts";

/** Every appliance's status, as last streamed. */
export const appliances = signal<ApplianceStatus[]>([]);
/** Whether the live stream is up. */
export const stream = signal<"connecting" | "live" | "lost">("connecting");
/** What the last failed action said. */
export const actionError = signal<string | null>(null);
/** The operation under way per appliance ("start", "stop", ...). */
export const pending = signal<Record<string, string>>({});
/** The appliance whose deletion waits for confirmation. */
export const deleteAsked = signal<string | null>(null);
/**
 * A start refused because another VAT holds the appliance's subscription: which
 * appliance, and the VAT that holds it ("host, id ..., last seen ..."), until the user
 * chooses how to start it here, or not to.
 */
export const startConflict = signal<{ name: string; holder: string } | null>(null);

/** The operations that the list's buttons run. */
export type Operation = "start" | "stop" | "suspend" | "reset";

/** Opens the event stream; returns the function that closes it. */
export function followEvents(): () => void {
  const events = new EventSource("/api/events");
  stream.value = "connecting";
  events.addEventListener("status", (e) => {
    appliances.value = JSON.parse((e as MessageEvent<string>).data);
    stream.value = "live";
  });
  events.onerror = async () => {
    stream.value = "lost";
    // EventSource retries by itself, but cannot tell a dead daemon from an ended
    // session: ask.
    try {
      await call("checking the session", api.api.status.$get());
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        events.close();
        sessionLost();
      }
    }
  };
  return () => events.close();
}

async function _run(name: string, what: string, request: () => Promise<ResponseLike>) {
  actionError.value = null;
  pending.value = { ...pending.value, [name]: what };
  try {
    await call(`${what} ${name}`, request());
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) sessionLost();
    // Only a start answers this; the user then chooses (`startHere`) instead of reading
    // the CLI's advice.
    const held = err instanceof ApiError && err.status === 409 &&
      /is in use on another VAT \(([^)]*)\)/.exec(err.message);
    if (held) startConflict.value = { name, holder: held[1] };
    else actionError.value = (err as Error).message;
  } finally {
    const { [name]: _, ...rest } = pending.value;
    pending.value = rest;
  }
}

/** Starts, stops, suspends or resets an appliance. */
export function operate(name: string, op: Operation): Promise<void> {
  const routes = api.api.appliances[":name"];
  const param = { param: { name } };
  const request = {
    start: () => routes.start.$post({ ...param, json: {} }),
    stop: () => routes.stop.$post(param),
    suspend: () => routes.suspend.$post(param),
    reset: () => routes.reset.$post(param),
  }[op];
  const doing = { start: "starting", stop: "stopping", suspend: "suspending", reset: "resetting" };
  return _run(name, doing[op], request);
}

/** How a start continues a subscription that another VAT holds. */
export type StartChoice = "takeOver" | "fork";

/**
 * Starts the appliance whose start another VAT's hold refused, as the user chose:
 * taking the subscription over (the other VAT keeps its unsent changes as a fork), or
 * continuing here in a fork of it.
 */
export function startHere(choice: StartChoice): Promise<void> {
  const name = startConflict.value?.name;
  startConflict.value = null;
  if (name === undefined) return Promise.resolve();
  const json = choice === "takeOver" ? { takeOver: true } : { fork: true };
  return _run(
    name,
    "starting",
    () => api.api.appliances[":name"].start.$post({ param: { name }, json }),
  );
}

/** Leaves the appliance whose start was refused stopped. */
export function cancelStart(): void {
  startConflict.value = null;
}

/**
 * Keeps an appliance for offline use (fetching and pinning its newest version), or stops
 * keeping it. Not a pending operation: the appliance stays usable while its hoard
 * runs, and the status's `operations` show its progress.
 */
export async function hoard(name: string, on: boolean): Promise<void> {
  actionError.value = null;
  try {
    await call(
      on ? `keeping ${name} for offline use` : `no longer keeping ${name} for offline use`,
      api.api.appliances[":name"].hoard.$post({ param: { name }, json: { on } }),
    );
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) sessionLost();
    actionError.value = (err as Error).message;
  }
}

/** Hides the last action's error. */
export function dismissError(): void {
  actionError.value = null;
}

/** Asks to delete an appliance (the UI then asks for confirmation). */
export function askDelete(name: string): void {
  deleteAsked.value = name;
}

/** Cancels a deletion that waits for confirmation. */
export function cancelDelete(): void {
  deleteAsked.value = null;
}

/** Deletes the appliance whose deletion was confirmed. */
export async function confirmDelete(): Promise<void> {
  const name = deleteAsked.value;
  if (name === null) return;
  deleteAsked.value = null;
  await _run(
    name,
    "deleting",
    // The dialog said how much not yet backed up would be lost.
    () =>
      api.api.appliances[":name"].$delete({
        param: { name },
        query: { confirm: name, discardUnsent: "1" },
      }),
  );
}
