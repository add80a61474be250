/**
 * Remembers the signed requests seen recently so that a captured request cannot be
 * sent again while its timestamp is still acceptable (a replayed DELETE, or a PUT of an
 * older `latest`). A client signs every attempt afresh with a new nonce, so its own
 * retries are never refused.
 *
 * The memory is a small SQLite file (`vat serve` keeps it in its state directory), so
 * a restart of the server does not reopen the window; every entry expires after
 * `REMEMBER_MS`, and at most `maxEntries` are kept: beyond, new writes are refused
 * (503) until old ones expire, rather than forgotten early. Without a file the memory
 * is in-process (tests).
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { MAX_CLOCK_SKEW_MS } from "../auth/request_signature.ts";

/**
 * How long a request is remembered: a request is accepted only within
 * `MAX_CLOCK_SKEW_MS` either side of its timestamp, so a window this long from its
 * arrival covers every moment at which it could be replayed.
 */
const REMEMBER_MS = 2 * MAX_CLOCK_SKEW_MS;

/** The default bound on requests remembered (about 100 MB of SQLite at most). */
const DEFAULT_MAX_ENTRIES = 1_000_000;

/** What `remember` found. */
export type ReplayVerdict = "new" | "replay" | "full";

/** Signatures seen within the replay window. */
export class ReplayGuard {
  readonly #db: DatabaseSync;
  readonly #maxEntries: number;
  readonly #q: {
    expire: StatementSync;
    insert: StatementSync;
    count: StatementSync;
  };
  #count: number;

  /** `path`: the SQLite file (made if absent), or undefined to remember in memory only. */
  constructor(path?: string, options: { maxEntries?: number } = {}) {
    this.#db = new DatabaseSync(path ?? ":memory:");
    this.#maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS seen (
        id TEXT PRIMARY KEY,
        expires_ms INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS seen_expiry ON seen (expires_ms);
    `);
    this.#q = {
      expire: this.#db.prepare("DELETE FROM seen WHERE expires_ms <= ?"),
      insert: this.#db.prepare("INSERT OR IGNORE INTO seen (id, expires_ms) VALUES (?, ?)"),
      count: this.#db.prepare("SELECT count(*) AS n FROM seen"),
    };
    this.#count = Number((this.#q.count.get() as { n: number }).n);
  }

  /**
   * Records a request: "new" when it was not seen (it is now remembered, durably),
   * "replay" when it was, "full" when `maxEntries` are remembered already.
   */
  remember(keyId: string, nonce: string, nowMs = Date.now()): ReplayVerdict {
    const expired = this.#q.expire.run(nowMs);
    this.#count -= Number(expired.changes);
    const inserted = this.#q.insert.run(`${keyId} ${nonce}`, nowMs + REMEMBER_MS);
    if (Number(inserted.changes) === 0) return "replay";
    if (this.#count >= this.#maxEntries) {
      this.#db.prepare("DELETE FROM seen WHERE id = ?").run(`${keyId} ${nonce}`);
      return "full";
    }
    this.#count++;
    return "new";
  }

  /** How many requests are remembered. */
  get size(): number {
    return this.#count;
  }

  close(): void {
    this.#db.close();
  }
}
