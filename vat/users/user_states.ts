/**
 * The users' states on one VAT, seen from outside their sessions: each user's
 * appliances database under `users/NAME/vat.sqlite` in the state directory.
 *
 * @module
 */

import { StateDb } from "../appliance/state_db.ts";

/** Where the users' states are, and the databases already open. */
export interface UserStates {
  /** The state directory's `users/`. */
  usersDir: string;
  /** A user not to look at (the current one). */
  except?: string;
  dbPathOf(user: string): string;
  /** A user's database if it is open now (a user still leaving); else it is opened. */
  openDbOf(user: string): StateDb | undefined;
}

/** Whether a user other than `states.except` has an appliance named `name`. */
export async function anotherUserHas(name: string, states: UserStates): Promise<boolean> {
  for await (const e of _readDir(states.usersDir)) {
    if (!e.isDirectory || e.name === states.except) continue;
    const path = states.dbPathOf(e.name);
    try {
      await Deno.stat(path);
    } catch {
      continue;
    }
    const open = states.openDbOf(e.name);
    const db = open ?? StateDb.open(path);
    try {
      if (db.list().some((r) => r.name === name)) return true;
    } finally {
      if (!open) db.close();
    }
  }
  return false;
}

async function* _readDir(path: string): AsyncIterable<Deno.DirEntry> {
  try {
    yield* Deno.readDir(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}
