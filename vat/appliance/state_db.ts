/**
 * The VAT's state database (`vat.sqlite` in the state directory, SQLite in WAL mode):
 * the appliances the user added, their subscriptions, and what the VAT holds each
 * appliance's repository to (pinned keys, the highest version accepted; docs/SECURITY.md).
 *
 * On a full disk a change fails with a `PermanentError` that says so and leaves the
 * database as it was (SQLite rolls the write back); reads keep working.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { ConflictError, NotFoundError, UsageError } from "../errors.ts";
import { mapDiskFull } from "../fs_atomic.ts";
import { inTransaction, writing } from "../sqlite_write.ts";

/** One appliance on this VAT, and the user's subscription to it. */
export interface ApplianceRecord {
  /** The user's name for it, unique on this VAT. */
  name: string;
  /** The appliance repository's location. */
  repo: string;
  addedAt: string;
  /**
   * The version whose initial user disk the subscription's user disk started from
   * (set at the first start, which creates the subscription); null before that.
   */
  userBaseVersion: number | null;
  /** The version a memory image was saved for by suspend; null when none. */
  suspendedVersion: number | null;
  /** The version last started. */
  lastVersion: number | null;
  /** The user asked for the newest version to be kept for offline use (`vat hoard`). */
  hoarded: boolean;
  /** The version whose every chunk is fetched and pinned; null before the first hoard. */
  hoardedVersion: number | null;
}

/**
 * What this VAT trusts of an appliance's repository (docs/SECURITY.md): pinned when the
 * appliance is added, changed only by signed key lists and by versions it accepts.
 */
export interface TrustRecord {
  /** The appliance. */
  name: string;
  /** The repository's id (`repo.json`): a different repository at the same address is refused. */
  repoId: string;
  /** The key list the keys come from (0: the keys pinned when added). */
  keySequence: number;
  /** The publisher keys whose signatures this VAT accepts. */
  keys: string[];
  /** Keys a signed key list retired, valid still for versions up to `upTo`. */
  retired: { key: string; upTo: number }[];
  /** How the keys were first pinned. */
  pinnedBy: "first use" | "administrator";
  pinnedAt: string;
  /** The highest version accepted: a newest version below it is a rollback. */
  highestVersion: number | null;
  highestAt: string | null;
  /** The newest version seen that is marked update required: older ones do not boot. */
  requiredVersion: number | null;
  /** The newest valid freshness statement seen (docs/FORMAT.md, "Freshness"). */
  vouched: { latest: number; signedAt: string; expires: string } | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS repo_trust (
  name TEXT PRIMARY KEY,
  record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS appliances (
  name TEXT PRIMARY KEY,
  repo TEXT NOT NULL,
  added_at TEXT NOT NULL,
  user_base_version INTEGER,
  suspended_version INTEGER,
  last_version INTEGER
);
`;

/** Columns added after the first schema, made on databases that lack them. */
const ADDED_COLUMNS: [string, string][] = [
  ["hoarded", "INTEGER NOT NULL DEFAULT 0"],
  ["hoarded_version", "INTEGER"],
];

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** Throws `UsageError` unless `name` can name an appliance (and a directory). */
export function checkApplianceName(name: string): string {
  if (!NAME.test(name)) {
    throw new UsageError(
      `"${name}" cannot name an appliance: use lower-case letters, digits, ".", "_" and "-" (at most 63)`,
    );
  }
  return name;
}

/** The state database. */
export class StateDb {
  readonly path: string;
  readonly #db: DatabaseSync;

  private constructor(path: string, db: DatabaseSync) {
    this.path = path;
    this.#db = db;
  }

  /** Opens (or creates) the database at `path`. */
  static open(path: string): StateDb {
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(path);
      db.exec("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;");
      db.exec(SCHEMA);
      const have = new Set(
        (db.prepare("PRAGMA table_info(appliances)").all() as { name: string }[]).map((c) =>
          c.name
        ),
      );
      for (const [column, type] of ADDED_COLUMNS) {
        if (!have.has(column)) db.exec(`ALTER TABLE appliances ADD COLUMN ${column} ${type}`);
      }
    } catch (err) {
      if (db?.isOpen) db.close();
      throw mapDiskFull(err, path);
    }
    return new StateDb(path, db);
  }

  /** Every appliance, by name. */
  list(): ApplianceRecord[] {
    return (this.#db.prepare("SELECT * FROM appliances ORDER BY name").all() as unknown as Row[])
      .map(_record);
  }

  /** The appliance called `name`; `NotFoundError` if there is none. */
  get(name: string): ApplianceRecord {
    const row = this.#db.prepare("SELECT * FROM appliances WHERE name = ?").get(name) as unknown as
      | Row
      | undefined;
    if (!row) {
      throw new NotFoundError(
        `no appliance called "${name}" (add one with: vat appliance add REPO)`,
      );
    }
    return _record(row);
  }

  /**
   * Adds an appliance, and what it trusts of its repository, in one transaction;
   * `ConflictError` if the name is taken.
   */
  add(name: string, repo: string, trust?: Omit<TrustRecord, "name">): ApplianceRecord {
    checkApplianceName(name);
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      this.#db.prepare("INSERT INTO appliances (name, repo, added_at) VALUES (?, ?, ?)").run(
        name,
        repo,
        new Date().toISOString(),
      );
      if (trust) this.setTrust({ ...trust, name });
      this.#db.exec("COMMIT");
    } catch (err) {
      this.#db.exec("ROLLBACK");
      if (/UNIQUE/.test((err as Error).message)) {
        throw new ConflictError(`an appliance called "${name}" already exists`, { cause: err });
      }
      throw mapDiskFull(err, this.path);
    }
    return this.get(name);
  }

  /** What the VAT trusts of appliance `name`'s repository; null before it was pinned. */
  trust(name: string): TrustRecord | null {
    const row = this.#db.prepare("SELECT record FROM repo_trust WHERE name = ?").get(name) as
      | { record: string }
      | undefined;
    return row ? { ...JSON.parse(row.record), name } : null;
  }

  /** Stores (replaces) a trust record. */
  setTrust(record: TrustRecord): void {
    const { name, ...rest } = record;
    this.#db.prepare("INSERT OR REPLACE INTO repo_trust (name, record) VALUES (?, ?)").run(
      name,
      JSON.stringify(rest),
    );
  }

  /** Changes fields of an appliance. */
  update(
    name: string,
    fields: Partial<
      Pick<
        ApplianceRecord,
        "userBaseVersion" | "suspendedVersion" | "lastVersion" | "hoarded" | "hoardedVersion"
      >
    >,
  ): void {
    const columns: Record<string, string> = {
      userBaseVersion: "user_base_version",
      suspendedVersion: "suspended_version",
      lastVersion: "last_version",
      hoarded: "hoarded",
      hoardedVersion: "hoarded_version",
    };
    inTransaction(this.#db, this.path, () => {
      for (const [field, value] of Object.entries(fields)) {
        this.#db.prepare(`UPDATE appliances SET ${columns[field]} = ? WHERE name = ?`).run(
          typeof value === "boolean" ? Number(value) : value ?? null,
          name,
        );
      }
    });
  }

  /** Removes an appliance's record and what it trusted. */
  remove(name: string): void {
    writing(this.path, () => {
      this.#db.prepare("DELETE FROM appliances WHERE name = ?").run(name);
      this.#db.prepare("DELETE FROM repo_trust WHERE name = ?").run(name);
    });
  }

  close(): void {
    this.#db.close();
  }
}

interface Row {
  name: string;
  repo: string;
  added_at: string;
  user_base_version: number | null;
  suspended_version: number | null;
  last_version: number | null;
  hoarded: number;
  hoarded_version: number | null;
}

function _record(row: Row): ApplianceRecord {
  const n = (v: number | null) => v === null ? null : Number(v);
  return {
    name: row.name,
    repo: row.repo,
    addedAt: row.added_at,
    userBaseVersion: n(row.user_base_version),
    suspendedVersion: n(row.suspended_version),
    lastVersion: n(row.last_version),
    hoarded: Number(row.hoarded) !== 0,
    hoardedVersion: n(row.hoarded_version),
  };
}
