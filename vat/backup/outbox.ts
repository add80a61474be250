/**
 * The local outbox of one subscription (docs/BACKUP.md, "The outbox"): snapshots of the
 * user disk waiting to be uploaded as versions of the data repository, in the order
 * they were taken, with the sealed chunk objects they add; and what this VAT knows of
 * the subscription's series (its name, the newest version it committed or restored,
 * that version's index, the base its local disk grows from).
 *
 * Files, under the subscription's `backup/` directory: `outbox.sqlite` (WAL) and
 * `objects/<name>`, one sealed object per chunk name, shared by every queued snapshot
 * that needs it. A snapshot's objects are synced (one `syncfs`) before its row is
 * committed, so a queued snapshot always has every object it names; objects written by
 * a snapshot that never committed are removed at the next open.
 *
 * A full disk fails the write that needed the space with a `PermanentError` that says
 * so (an object is never left half written, a transaction never half applied), and
 * leaves the queued snapshots as they were (docs/BACKUP.md, "A full disk").
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { DiskIndex } from "../repo/disk_index.ts";
import { fromHex, toHex } from "../repo/chunk_codec.ts";
import type { VmDescription } from "../repo/manifest.ts";
import { isDiskFull, mapDiskFull, removeIfThere } from "../fs_atomic.ts";
import { PermanentError } from "../errors.ts";
import { inTransaction, writing } from "../sqlite_write.ts";

/** Why a snapshot was taken. */
export type SnapshotReason = "start" | "stop" | "periodic" | "now" | "undo" | "first";

/** What a snapshot records besides its content. */
export interface SnapshotInfo {
  /** Unique; carried into the committed manifest, so a resumed upload never commits twice. */
  id: string;
  takenAt: string;
  reason: SnapshotReason;
  /** Bytes of chunks that changed since the snapshot before it. */
  changedBytes: number;
  /** Bytes of the disk's chunks that are not all zeroes. */
  dataBytes: number;
  /** An undo: the version whose content this snapshot commits again. */
  undoneTo?: number;
  /** The VM description of the appliance version it ran under. */
  vm: VmDescription;
}

/** A queued snapshot. */
export interface QueuedSnapshot extends SnapshotInfo {
  seq: number;
  /** Chunk names of the whole disk. */
  index: DiskIndex;
  /** Names (hex) of the objects it needs from the outbox. */
  objects: string[];
  /** Bytes of those objects. */
  objectBytes: number;
}

/** What this VAT knows of its subscription's series. */
export interface SeriesState {
  /** The series name in the data repository (the appliance's, or a fork's). */
  series: string;
  /** The newest version this VAT committed or restored; null before the first. */
  committedVersion: number | null;
  /**
   * The data-repository version the local user disk grows from (of this series, or of
   * the one it was forked from); null while it grows from the appliance's initial user
   * disk.
   */
  base: { series: string; version: number } | null;
  /** When the newest committed snapshot was taken. */
  lastBackupAt: string | null;
  /** Why the series was forked, shown until the user dismisses it; null when not. */
  forkNote: string | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS snapshots (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  info TEXT NOT NULL,
  disk_index BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_objects (
  seq INTEGER NOT NULL,
  name BLOB NOT NULL,
  PRIMARY KEY (seq, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
  name BLOB PRIMARY KEY,
  size_bytes INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  state TEXT NOT NULL,
  committed_index BLOB
);
`;

/** A snapshot being written into the outbox: objects first, then `commit`. */
export interface SnapshotWriter {
  /** Stores a sealed object under `name` (no-op if the outbox has it). */
  addObject(name: Uint8Array, object: Uint8Array): Promise<void>;
  /** Syncs the objects and queues the snapshot. */
  commit(index: DiskIndex, info: SnapshotInfo): Promise<QueuedSnapshot>;
  /** Drops what was written (objects no queued snapshot needs). */
  abandon(): Promise<void>;
}

/** One subscription's outbox. */
export class Outbox {
  readonly dir: string;
  readonly #db: DatabaseSync;
  readonly #objectsDir: string;

  private constructor(dir: string, db: DatabaseSync) {
    this.dir = dir;
    this.#db = db;
    this.#objectsDir = `${dir}/objects`;
  }

  /** Opens (or creates) the outbox in `dir`, for a series called `series` when new. */
  static async open(dir: string, series: string): Promise<Outbox> {
    let db: DatabaseSync | undefined;
    try {
      await Deno.mkdir(`${dir}/objects`, { recursive: true });
      db = new DatabaseSync(`${dir}/outbox.sqlite`);
      db.exec("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA synchronous = FULL;");
      db.exec(SCHEMA);
      if (!db.prepare("SELECT 1 FROM series").get()) {
        const state: SeriesState = {
          series,
          committedVersion: null,
          base: null,
          lastBackupAt: null,
          forkNote: null,
        };
        db.prepare("INSERT INTO series (id, state) VALUES (1, ?)").run(JSON.stringify(state));
      }
    } catch (err) {
      if (db?.isOpen) db.close();
      throw mapDiskFull(err, dir);
    }
    const outbox = new Outbox(dir, db);
    await outbox.#removeStrayObjects();
    return outbox;
  }

  /** The series state. */
  state(): SeriesState {
    const row = this.#db.prepare("SELECT state FROM series").get() as { state: string };
    return JSON.parse(row.state);
  }

  /** Changes the series state. */
  updateState(change: Partial<SeriesState>): SeriesState {
    const state = { ...this.state(), ...change };
    writing(
      this.dir,
      () => this.#db.prepare("UPDATE series SET state = ?").run(JSON.stringify(state)),
    );
    return state;
  }

  /** The index of the newest committed (or restored) version; null before one. */
  committedIndex(): DiskIndex | null {
    const row = this.#db.prepare("SELECT committed_index FROM series").get() as {
      committed_index: Uint8Array | null;
    };
    return row.committed_index
      ? DiskIndex.fromBytes(row.committed_index, "the outbox's committed index")
      : null;
  }

  /** Records that `version` (of content `index`) is the newest committed or restored. */
  setCommitted(version: number | null, index: DiskIndex | null, change: Partial<SeriesState> = {}) {
    inTransaction(this.#db, this.dir, () => {
      this.#db.prepare("UPDATE series SET committed_index = ?").run(index ? index.toBytes() : null);
      this.updateState({ ...change, committedVersion: version });
    });
  }

  /** The index the next snapshot starts from: the newest queued one, else the committed one. */
  latestIndex(): DiskIndex | null {
    const row = this.#db.prepare("SELECT disk_index FROM snapshots ORDER BY seq DESC LIMIT 1")
      .get() as { disk_index: Uint8Array } | undefined;
    return row ? DiskIndex.fromBytes(row.disk_index, "a queued snapshot") : this.committedIndex();
  }

  /** Queued snapshots, oldest first. */
  queued(): QueuedSnapshot[] {
    const rows = this.#db.prepare("SELECT seq, info, disk_index FROM snapshots ORDER BY seq")
      .all() as { seq: number; info: string; disk_index: Uint8Array }[];
    return rows.map((row) => this.#snapshot(row));
  }

  /** How many snapshots are queued (without reading them). */
  queuedCount(): number {
    const row = this.#db.prepare("SELECT COUNT(*) AS n FROM snapshots").get() as { n: number };
    return Number(row.n);
  }

  /** The oldest queued snapshot, or null. */
  oldest(): QueuedSnapshot | null {
    const row = this.#db.prepare("SELECT seq, info, disk_index FROM snapshots ORDER BY seq LIMIT 1")
      .get() as { seq: number; info: string; disk_index: Uint8Array } | undefined;
    return row ? this.#snapshot(row) : null;
  }

  /** Bytes of objects queued snapshots still need to upload. */
  pendingBytes(): number {
    const row = this.#db.prepare("SELECT COALESCE(SUM(size_bytes), 0) AS n FROM objects").get() as {
      n: number;
    };
    return Number(row.n);
  }

  /** The sealed object `name` (hex). */
  async readObject(name: string): Promise<Uint8Array> {
    return await Deno.readFile(`${this.#objectsDir}/${name}`);
  }

  /** Starts writing a snapshot. */
  writer(): SnapshotWriter {
    const added = new Map<string, number>();
    const needed = new Set<string>();
    return {
      addObject: async (name, object) => {
        const id = toHex(name);
        needed.add(id);
        if (added.has(id) || this.#hasObject(name)) return;
        const path = `${this.#objectsDir}/${id}`;
        added.set(id, object.length);
        try {
          await Deno.writeFile(path, object);
        } catch (err) {
          // Never half an object: a retry writes it whole, and the disk gets its space back.
          added.delete(id);
          await removeIfThere(path);
          throw mapDiskFull(err, this.#objectsDir);
        }
      },
      commit: async (index, info) => {
        await _syncFilesystem(this.dir);
        inTransaction(this.#db, this.dir, () => {
          const result = this.#db.prepare(
            "INSERT INTO snapshots (id, info, disk_index) VALUES (?, ?, ?)",
          ).run(info.id, JSON.stringify(info), index.toBytes());
          const seq = Number(result.lastInsertRowid);
          const addObject = this.#db.prepare(
            "INSERT OR IGNORE INTO objects (name, size_bytes) VALUES (?, ?)",
          );
          const link = this.#db.prepare(
            "INSERT OR IGNORE INTO snapshot_objects (seq, name) VALUES (?, ?)",
          );
          for (const [id, size] of added) addObject.run(fromHex(id), size);
          for (const id of needed) link.run(seq, fromHex(id));
        });
        return this.queuedById(info.id);
      },
      abandon: async () => {
        for (const id of added.keys()) {
          if (!this.#hasObject(fromHex(id))) await removeIfThere(`${this.#objectsDir}/${id}`);
        }
      },
    };
  }

  /** The queued snapshot `id`. */
  queuedById(id: string): QueuedSnapshot {
    const row = this.#db.prepare("SELECT seq, info, disk_index FROM snapshots WHERE id = ?")
      .get(id) as { seq: number; info: string; disk_index: Uint8Array } | undefined;
    if (!row) throw new PermanentError(`snapshot ${id} is not in the outbox`);
    return this.#snapshot(row);
  }

  /**
   * Removes `snapshot` after its upload committed it as `version`: the series state
   * advances, and objects no other queued snapshot needs are deleted. (A collapse may
   * have dropped the snapshot while it was uploaded; the state advances all the same.)
   */
  async uploaded(snapshot: QueuedSnapshot, version: number): Promise<void> {
    const seq = snapshot.seq;
    inTransaction(this.#db, this.dir, () => {
      this.#db.prepare("UPDATE series SET committed_index = ?").run(snapshot.index.toBytes());
      this.updateState({ committedVersion: version });
      this.#db.prepare("DELETE FROM snapshots WHERE seq = ?").run(seq);
      this.#db.prepare("DELETE FROM snapshot_objects WHERE seq = ?").run(seq);
    });
    await this.#dropUnneededObjects();
  }

  /**
   * Collapses every queued snapshot into the newest one (newest content per chunk
   * wins): the older ones are dropped, and the newest takes over those of their
   * objects its index still names. Returns how many snapshots were dropped.
   */
  async collapse(): Promise<number> {
    const all = this.queued();
    if (all.length < 2) return 0;
    const newest = all[all.length - 1];
    const names = new Set<string>();
    for (let i = 0; i < newest.index.count; i++) {
      const hash = newest.index.hash(i);
      if (hash) names.add(toHex(hash));
    }
    inTransaction(this.#db, this.dir, () => {
      const link = this.#db.prepare(
        "INSERT OR IGNORE INTO snapshot_objects (seq, name) VALUES (?, ?)",
      );
      for (const older of all.slice(0, -1)) {
        for (const id of older.objects) if (names.has(id)) link.run(newest.seq, fromHex(id));
        this.#db.prepare("DELETE FROM snapshots WHERE seq = ?").run(older.seq);
        this.#db.prepare("DELETE FROM snapshot_objects WHERE seq = ?").run(older.seq);
      }
    });
    await this.#dropUnneededObjects();
    return all.length - 1;
  }

  /** Whether snapshot `seq` is still queued. */
  isQueued(seq: number): boolean {
    return this.#db.prepare("SELECT 1 FROM snapshots WHERE seq = ?").get(seq) !== undefined;
  }

  /** Closes the database (idempotent). */
  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }

  #hasObject(name: Uint8Array): boolean {
    return this.#db.prepare("SELECT 1 FROM objects WHERE name = ?").get(name) !== undefined;
  }

  #snapshot(row: { seq: number; info: string; disk_index: Uint8Array }): QueuedSnapshot {
    const objects = this.#db.prepare(
      "SELECT o.name AS name, o.size_bytes AS size FROM snapshot_objects s " +
        "JOIN objects o ON o.name = s.name WHERE s.seq = ?",
    ).all(row.seq) as { name: Uint8Array; size: number }[];
    return {
      ...JSON.parse(row.info),
      seq: Number(row.seq),
      index: DiskIndex.fromBytes(row.disk_index, "a queued snapshot"),
      objects: objects.map((o) => toHex(o.name)),
      objectBytes: objects.reduce((sum, o) => sum + Number(o.size), 0),
    };
  }

  /**
   * Deletes the objects no queued snapshot needs. Called after a change that already
   * committed, so a full disk (the delete needs room in the WAL) is not an error: the
   * rows and files stay, and the next call removes them.
   */
  async #dropUnneededObjects(): Promise<void> {
    const orphans = this.#db.prepare(
      "SELECT name FROM objects WHERE name NOT IN (SELECT name FROM snapshot_objects)",
    ).all() as { name: Uint8Array }[];
    try {
      this.#db.prepare(
        "DELETE FROM objects WHERE name NOT IN (SELECT name FROM snapshot_objects)",
      ).run();
    } catch (err) {
      if (isDiskFull(err)) return;
      throw err;
    }
    for (const { name } of orphans) await removeIfThere(`${this.#objectsDir}/${toHex(name)}`);
  }

  /** Objects of snapshots that never committed (a crash while one was taken). */
  async #removeStrayObjects(): Promise<void> {
    for await (const entry of Deno.readDir(this.#objectsDir)) {
      if (!/^[0-9a-f]{64}$/.test(entry.name) || !this.#hasObject(fromHex(entry.name))) {
        await removeIfThere(`${this.#objectsDir}/${entry.name}`);
      }
    }
  }
}

/** Makes every write to the filesystem holding `dir` durable (`sync -f`, i.e. syncfs). */
async function _syncFilesystem(dir: string): Promise<void> {
  const { code, stderr } = await new Deno.Command("sync", { args: ["-f", dir], stderr: "piped" })
    .output();
  if (code !== 0) {
    throw new PermanentError(
      `cannot sync the backup outbox ${dir}: ${new TextDecoder().decode(stderr).trim()}`,
    );
  }
}
