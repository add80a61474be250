/**
 * Writes to a SQLite database (`node:sqlite`) that fail cleanly on a full disk.
 * SQLite itself keeps the database intact when a write fails (its journal or WAL); what
 * these helpers add is the error: SQLITE_FULL becomes a `PermanentError` that names the
 * disk and says what to do, and a transaction that SQLite already rolled back (it does
 * on SQLITE_FULL) is not rolled back twice, which would hide the first error behind
 * "cannot rollback - no transaction is active".
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";
import { mapDiskFull } from "./fs_atomic.ts";

/** Rolls back the open transaction of `db`, unless SQLite already ended it. */
export function rollback(db: DatabaseSync): void {
  if (db.isTransaction) db.exec("ROLLBACK");
}

/**
 * Runs `fn` in one write transaction (BEGIN IMMEDIATE) and commits it; on any error
 * rolls back and rethrows, a full disk as a `PermanentError` about the disk of `path`.
 */
export function inTransaction<T>(db: DatabaseSync, path: string, fn: () => T): T {
  try {
    db.exec("BEGIN IMMEDIATE");
    const result = fn();
    db.exec("COMMIT");
    return result;
  } catch (err) {
    rollback(db);
    throw mapDiskFull(err, path);
  }
}

/** Runs `fn` (one write statement), a full disk as a `PermanentError` about `path`. */
export function writing<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw mapDiskFull(err, path);
  }
}
