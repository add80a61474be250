/**
 * The VAT's persistent, content-addressed chunk cache (docs/CACHE.md).
 *
 * Chunk plaintext lives in slab files of fixed-size slots (`slab-<slotBytes>.bin`,
 * read with one positioned read per chunk, no decompression on the hot path); the
 * index is SQLite in WAL mode. Nothing is fsynced per chunk: every slot is checked
 * against its hash the first time this process reads it, so after a crash a slot
 * whose data never reached the disk is simply a miss, fetched again. The guest never
 * sees bad data.
 *
 * The cache is storage only: what a miss fetches, in which order, how often retried
 * and at which priority is the fetch path's (`vat/fetch/`), which stores what it
 * fetched here.
 *
 * A full disk never fails a read: a chunk that cannot be stored is served uncached,
 * the cache says so once in the log ("cache disk full ...") and in its stats, and
 * caching resumes by itself once a chunk fits again (docs/CACHE.md, "A full disk").
 *
 * @module
 */

import { closeSync, constants as fsConstants, openSync, readSync, writeSync } from "node:fs";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { isDiskFull, mapDiskFull } from "../fs_atomic.ts";
import { inTransaction, rollback, writing } from "../sqlite_write.ts";
import { fromHex, hashChunk, toHex } from "../repo/chunk_codec.ts";
import { EntryTable } from "./entry_table.ts";

/** Options of `ChunkCache.open`. */
export interface ChunkCacheOptions {
  /** The cache directory (made if missing). */
  dir: string;
  /** Byte budget for chunk data. */
  budgetBytes: number;
  /**
   * How a chunk's name follows from its content (default SHA-256); a cache of a data
   * repository's chunks checks them by the user's keyed hash.
   */
  hashOf?: (data: Uint8Array) => Uint8Array;
  /** Index rows kept in memory (default 64 Ki: 4 GiB of 64 KiB chunks, about 6 MB). */
  maxEntries?: number;
}

/** Counters, as the API and benchmarks show them. */
export interface CacheStats {
  hits: number;
  misses: number;
  bytesFetched: number;
  bytesEvicted: number;
  /** Chunks that failed their hash check and were fetched again. */
  corruptDropped: number;
  usedBytes: number;
  budgetBytes: number;
  chunks: number;
  pinnedChunks: number;
  /** The cache's disk was full at the last store: chunks are served but not cached. */
  diskFull: boolean;
}

interface Slab {
  slotBytes: number;
  /** A file descriptor: node:fs reads and writes at a position (pread, pwrite). */
  fd: number;
}

/** What this process knows of a cached chunk; the index's row, in memory. */
interface _Entry {
  /** The chunk's hash, hex (the key of its entry). */
  id: string;
  slotBytes: number;
  slot: number;
  length: number;
}

/** The counters kept across restarts. */
const COUNTERS = ["hits", "misses", "bytesFetched", "bytesEvicted", "corruptDropped"] as const;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS chunks (
  hash BLOB PRIMARY KEY,
  slot_bytes INTEGER NOT NULL,
  slot INTEGER NOT NULL,
  length INTEGER NOT NULL,
  last_used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_by_use ON chunks(last_used);
CREATE UNIQUE INDEX IF NOT EXISTS chunks_by_slot ON chunks(slot_bytes, slot);
CREATE TABLE IF NOT EXISTS free_slots (
  slot_bytes INTEGER NOT NULL,
  slot INTEGER NOT NULL,
  PRIMARY KEY (slot_bytes, slot)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slabs (slot_bytes INTEGER PRIMARY KEY, slots INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pins (
  owner TEXT NOT NULL,
  hash BLOB NOT NULL,
  PRIMARY KEY (owner, hash)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pins_by_hash ON pins(hash);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
`;

/**
 * Index rows kept in memory by default (`EntryTable`, about 90 bytes each: 4 GiB of 64 KiB
 * chunks in 6 MB). A chunk read again after its row was forgotten costs one SQLite lookup
 * (a warm sequential read of a 4 GiB disk took 1.7 s with room for a quarter of it, 1.0-1.3 s
 * with room for all), not a hash check: which slots this process verified is kept apart,
 * one bit a slot.
 */
const DEFAULT_MAX_ENTRIES = 1 << 16;

/** The smallest slot; chunks are stored in the smallest power-of-two slot that fits. */
const MIN_SLOT_BYTES = 4096;

/** A persistent chunk cache. One process opens a cache directory at a time. */
export class ChunkCache {
  readonly dir: string;
  readonly budgetBytes: number;
  readonly #db: DatabaseSync;
  readonly #slabs = new Map<number, Slab>();
  /** Rows read from the index (or written) by this process, by hash. */
  readonly #entries: EntryTable;
  /** LRU times not yet written, by hex hash. */
  readonly #touched = new Map<string, number>();
  /** Slots this process has checked against their chunk's hash: a bitmap per slot size. */
  readonly #verified = new Map<number, Uint8Array>();
  /** A logical clock for LRU order: strictly increasing, so ties never happen. */
  #clock = 0;
  readonly #hashOf: (data: Uint8Array) => Uint8Array;
  /** Closed: reads miss and stores are dropped (a fetch that ends after `close`). */
  #closed = false;
  #usedBytes = 0;
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  /** The last store found the disk full (logged once, until a store succeeds again). */
  #diskFull = false;
  readonly #lock: Deno.FsFile;
  readonly #stats: Record<(typeof COUNTERS)[number], number> = {
    hits: 0,
    misses: 0,
    bytesFetched: 0,
    bytesEvicted: 0,
    corruptDropped: 0,
  };
  readonly #q: Record<string, StatementSync>;

  private constructor(options: ChunkCacheOptions, db: DatabaseSync, lock: Deno.FsFile) {
    this.dir = options.dir;
    this.budgetBytes = options.budgetBytes;
    this.#db = db;
    this.#lock = lock;
    this.#hashOf = options.hashOf ?? hashChunk;
    this.#entries = new EntryTable(options.maxEntries ?? DEFAULT_MAX_ENTRIES);
    this.#q = {
      lookup: db.prepare("SELECT slot_bytes, slot, length FROM chunks WHERE hash = ?"),
      insert: db.prepare(
        "INSERT OR REPLACE INTO chunks (hash, slot_bytes, slot, length, last_used) VALUES (?, ?, ?, ?, ?)",
      ),
      remove: db.prepare("DELETE FROM chunks WHERE hash = ?"),
      touch: db.prepare("UPDATE chunks SET last_used = ? WHERE hash = ?"),
      takeFree: db.prepare("SELECT slot FROM free_slots WHERE slot_bytes = ? LIMIT 1"),
      dropFree: db.prepare("DELETE FROM free_slots WHERE slot_bytes = ? AND slot = ?"),
      addFree: db.prepare("INSERT OR IGNORE INTO free_slots (slot_bytes, slot) VALUES (?, ?)"),
      slots: db.prepare("SELECT slots FROM slabs WHERE slot_bytes = ?"),
      growSlab: db.prepare(
        "INSERT INTO slabs (slot_bytes, slots) VALUES (?, 1) ON CONFLICT(slot_bytes) DO UPDATE SET slots = slots + 1 RETURNING slots",
      ),
      victims: db.prepare(
        `SELECT hash, slot_bytes, slot FROM chunks c
         WHERE NOT EXISTS (SELECT 1 FROM pins p WHERE p.hash = c.hash)
         ORDER BY last_used LIMIT 64`,
      ),
      used: db.prepare("SELECT COALESCE(SUM(slot_bytes), 0) AS used, COUNT(*) AS n FROM chunks"),
      clock: db.prepare("SELECT COALESCE(MAX(last_used), 0) AS clock FROM chunks"),
      pinned: db.prepare("SELECT COUNT(DISTINCT hash) AS n FROM pins"),
      pin: db.prepare("INSERT OR IGNORE INTO pins (owner, hash) VALUES (?, ?)"),
      unpin: db.prepare("DELETE FROM pins WHERE owner = ?"),
      owners: db.prepare("SELECT DISTINCT owner FROM pins WHERE substr(owner, 1, ?) = ?"),
      counter: db.prepare("SELECT value FROM counters WHERE name = ?"),
      setCounter: db.prepare("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)"),
    };
  }

  /** Opens (or creates) the cache in `options.dir`. */
  static async open(options: ChunkCacheOptions): Promise<ChunkCache> {
    let lock: Deno.FsFile;
    try {
      await Deno.mkdir(options.dir, { recursive: true });
      lock = await Deno.open(`${options.dir}/lock`, { read: true, write: true, create: true });
    } catch (err) {
      throw mapDiskFull(err, options.dir);
    }
    try {
      await lock.lock(true);
    } catch (err) {
      lock.close();
      throw err;
    }
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(`${options.dir}/index.sqlite`);
      db.exec(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
      );
      db.exec(SCHEMA);
    } catch (err) {
      lock.close();
      throw mapDiskFull(err, options.dir);
    }
    const cache = new ChunkCache(options, db, lock);
    const row = cache.#q.used.get() as { used: number };
    cache.#usedBytes = Number(row.used);
    cache.#clock = Number((cache.#q.clock.get() as { clock: number }).clock);
    for (const name of COUNTERS) {
      const saved = cache.#q.counter.get(name) as { value: number } | undefined;
      if (saved) cache.#stats[name] = Number(saved.value);
    }
    return cache;
  }

  /**
   * Chunk `hash` whole, if the cache holds it intact (checked against its hash the
   * first time this process reads it), else null; counted as a hit or a miss.
   */
  read(hash: Uint8Array): Uint8Array | null {
    const data = this.peek(hash);
    if (data) this.#stats.hits++;
    else this.#stats.misses++;
    return data;
  }

  /** `read`, not counted: a second look after a request waited its turn. */
  peek(hash: Uint8Array): Uint8Array | null {
    if (this.#closed) return null;
    const entry = this.#lookup(hash);
    if (!entry) return null;
    const data = this.#readVerified(entry, hash);
    if (data) this.#touch(entry);
    return data;
  }

  /**
   * Fills `into` with the bytes of chunk `hash` from `offset` on, if the cache holds
   * the chunk intact: once the slot is verified, with one positioned read straight
   * into `into`. Returns false on a miss, not counted (the fetch path's `get` counts it).
   */
  readCached(hash: Uint8Array, offset: number, into: Uint8Array): boolean {
    if (this.#closed) return false;
    const entry = this.#lookup(hash);
    if (!entry || offset + into.length > entry.length) return false;
    if (!this.#isVerified(entry)) {
      const data = this.#readVerified(entry, hash);
      if (!data) return false;
      into.set(data.subarray(offset, offset + into.length));
    } else {
      const slab = this.#slab(entry.slotBytes);
      const position = entry.slot * entry.slotBytes + offset;
      let filled = 0;
      while (filled < into.length) {
        const n = readSync(slab.fd, into, filled, into.length - filled, position + filled);
        if (n === 0) {
          // The slab ends early (truncated under us): a miss, fetched again.
          this.#dropBad(entry);
          return false;
        }
        filled += n;
      }
    }
    this.#stats.hits++;
    this.#touch(entry);
    return true;
  }

  /** Whether the cache holds `hash` (not verified). */
  has(hash: Uint8Array): boolean {
    return this.#q.lookup.get(hash) !== undefined;
  }

  /** Stores a chunk the caller already verified, unless held; on a full disk, doesn't. */
  put(hash: Uint8Array, data: Uint8Array): void {
    if (this.#closed || this.has(hash)) return;
    this.#store(hash, data);
  }

  /**
   * Stores a chunk just fetched and verified, counted in `bytesFetched`; it replaces
   * any row left for `hash` (one whose drop failed on a full disk). On a full disk,
   * or after `close`, it is not stored.
   */
  store(hash: Uint8Array, data: Uint8Array): void {
    if (this.#closed) return;
    this.#stats.bytesFetched += data.length;
    this.#store(hash, data);
  }

  /** Pins `hashes` for `owner` (e.g. "repo-id@3"): they are never evicted. */
  pin(owner: string, hashes: Iterable<Uint8Array>): void {
    inTransaction(this.#db, this.dir, () => {
      for (const hash of hashes) this.#q.pin.run(owner, hash);
    });
  }

  /** Drops every pin of `owner`. */
  unpin(owner: string): void {
    writing(this.dir, () => this.#q.unpin.run(owner));
  }

  /** The owners holding pins whose names start with `prefix`. */
  pinOwners(prefix: string): string[] {
    return (this.#q.owners.all(prefix.length, prefix) as { owner: string }[]).map((r) => r.owner);
  }

  /** The counters and sizes. */
  stats(): CacheStats {
    const row = this.#q.used.get() as { n: number };
    return {
      ...this.#stats,
      usedBytes: this.#usedBytes,
      budgetBytes: this.budgetBytes,
      chunks: Number(row.n),
      pinnedChunks: Number((this.#q.pinned.get() as { n: number }).n),
      diskFull: this.#diskFull,
    };
  }

  /**
   * Writes pending LRU updates and counters, closes files and the database. A fetch
   * still running finds the cache closed and is not stored.
   */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#flushTouches();
    clearTimeout(this.#flushTimer);
    for (const slab of this.#slabs.values()) closeSync(slab.fd);
    this.#slabs.clear();
    this.#db.close();
    this.#lock.close();
    return Promise.resolve();
  }

  /** The index entry of `hash`, from memory or else from SQLite. */
  #lookup(hash: Uint8Array): _Entry | undefined {
    const id = toHex(hash);
    const held = this.#entries.get(hash);
    if (held) return { id, ...held };
    const row = this.#q.lookup.get(hash) as
      | { slot_bytes: number; slot: number; length: number }
      | undefined;
    if (!row) return undefined;
    const entry = {
      id,
      slotBytes: Number(row.slot_bytes),
      slot: Number(row.slot),
      length: Number(row.length),
    };
    this.#entries.set(hash, entry);
    return entry;
  }

  /** The whole chunk of `entry` (chunk `hash`), checked against its hash unless this process did. */
  #readVerified(entry: _Entry, hash: Uint8Array): Uint8Array | null {
    const slab = this.#slab(entry.slotBytes);
    const data = new Uint8Array(entry.length);
    const offset = entry.slot * entry.slotBytes;
    let filled = 0;
    while (filled < data.length) {
      const n = readSync(slab.fd, data, filled, data.length - filled, offset + filled);
      if (n === 0) break;
      filled += n;
    }
    if (!this.#isVerified(entry)) {
      if (filled < data.length || !Buffer.from(this.#hashOf(data)).equals(hash)) {
        // A crash before the data reached the disk, or a bad sector: a miss.
        this.#dropBad(entry);
        this.#stats.corruptDropped++;
        console.error(`cache: chunk ${entry.id} failed its hash check; fetching it again`);
        return null;
      }
      this.#markVerified(entry.slotBytes, entry.slot, true);
    }
    return data;
  }

  /**
   * Stores a verified chunk, if it fits the budget and the disk. The data is written
   * first, then the rows that name it are committed in one transaction: a full disk
   * fails one or the other and leaves no row naming a slot whose write failed. (A crash
   * after the commit, before the page cache reached the disk, can leave such a row;
   * the hash check on the next process's first read turns it into a miss.)
   */
  #store(hash: Uint8Array, data: Uint8Array): void {
    const slotBytes = _slotBytesFor(data.length);
    if (slotBytes > this.budgetBytes) return;
    try {
      if (!this.#makeRoom(slotBytes)) return; // everything is pinned: serve without caching
      const slab = this.#slab(slotBytes);
      const free = this.#q.takeFree.get(slotBytes) as { slot: number } | undefined;
      const slot = free
        ? Number(free.slot)
        : Number((this.#q.slots.get(slotBytes) as { slots: number } | undefined)?.slots ?? 0);
      let written = 0;
      const offset = slot * slotBytes;
      while (written < data.length) {
        written += writeSync(slab.fd, data, written, data.length - written, offset + written);
      }
      let replaced: { slot_bytes: number; slot: number } | undefined;
      this.#db.exec("BEGIN IMMEDIATE");
      try {
        if (free) this.#q.dropFree.run(slotBytes, slot);
        else this.#q.growSlab.get(slotBytes);
        // A row left by a drop that failed (the disk was full): its slot is free now.
        const old = this.#q.lookup.get(hash) as { slot_bytes: number; slot: number } | undefined;
        if (old) {
          this.#q.addFree.run(old.slot_bytes, old.slot);
          replaced = old;
        }
        this.#q.insert.run(hash, slotBytes, slot, data.length, ++this.#clock);
        this.#db.exec("COMMIT");
      } catch (err) {
        rollback(this.#db);
        throw err;
      }
      this.#usedBytes += slotBytes - Number(replaced?.slot_bytes ?? 0);
      if (replaced) this.#markVerified(Number(replaced.slot_bytes), Number(replaced.slot), false);
      this.#markVerified(slotBytes, slot, true);
      this.#entries.set(hash, { slotBytes, slot, length: data.length });
      if (this.#diskFull) {
        this.#diskFull = false;
        console.error(`cache: the disk of ${this.dir} has space again; caching resumes`);
      }
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      this.#noteDiskFull(err);
    }
  }

  /** Says once (until a store succeeds again) that chunks are served uncached. */
  #noteDiskFull(err: unknown): void {
    if (this.#diskFull) return;
    this.#diskFull = true;
    console.error(
      `cache disk full: the disk of ${this.dir} has no space left (${(err as Error).message}); ` +
        `chunks are served but not cached until there is space again (free some on that disk, ` +
        `or lower the cache size)`,
    );
  }

  /** Drops a row whose slot failed its check; on a full disk only forgets it here. */
  #dropBad(entry: _Entry): void {
    try {
      this.#drop(fromHex(entry.id), entry.slotBytes, entry.slot);
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      // The row stays until a store of the same chunk replaces it (and frees its slot).
      this.#markVerified(entry.slotBytes, entry.slot, false);
      this.#entries.delete(fromHex(entry.id));
      this.#touched.delete(entry.id);
      this.#noteDiskFull(err);
    }
  }

  #makeRoom(slotBytes: number): boolean {
    while (this.#usedBytes + slotBytes > this.budgetBytes) {
      const victims = this.#q.victims.all() as {
        hash: Uint8Array;
        slot_bytes: number;
        slot: number;
      }[];
      if (victims.length === 0) return false;
      const evictedBefore = this.#stats.bytesEvicted;
      this.#db.exec("BEGIN");
      try {
        for (const v of victims) {
          if (this.#usedBytes + slotBytes <= this.budgetBytes) break;
          this.#drop(v.hash, Number(v.slot_bytes), Number(v.slot));
          this.#stats.bytesEvicted += Number(v.slot_bytes);
        }
        this.#db.exec("COMMIT");
      } catch (err) {
        // The rows are back: so are the bytes they use (the entries `#drop` forgot
        // here are looked up again when read).
        rollback(this.#db);
        this.#usedBytes = Number((this.#q.used.get() as { used: number }).used);
        this.#stats.bytesEvicted = evictedBefore;
        throw err;
      }
    }
    return true;
  }

  #drop(hash: Uint8Array, slotBytes: number, slot: number): void {
    this.#q.remove.run(hash);
    this.#q.addFree.run(slotBytes, slot);
    this.#usedBytes -= slotBytes;
    this.#markVerified(slotBytes, slot, false);
    this.#entries.delete(hash);
    this.#touched.delete(toHex(hash));
  }

  /** Whether this process has checked `entry`'s slot against its hash. */
  #isVerified(entry: _Entry): boolean {
    const bits = this.#verified.get(entry.slotBytes);
    return bits !== undefined && (bits[entry.slot >> 3] & (1 << (entry.slot & 7))) !== 0;
  }

  #markVerified(slotBytes: number, slot: number, verified: boolean): void {
    let bits = this.#verified.get(slotBytes);
    const byte = slot >> 3;
    if (!bits || byte >= bits.length) {
      if (!verified) return;
      const grown = new Uint8Array(Math.max(byte + 1, (bits?.length ?? 0) * 2, 1024));
      if (bits) grown.set(bits);
      this.#verified.set(slotBytes, bits = grown);
    }
    if (verified) bits[byte] |= 1 << (slot & 7);
    else bits[byte] &= ~(1 << (slot & 7));
  }

  #slab(slotBytes: number): Slab {
    let slab = this.#slabs.get(slotBytes);
    if (!slab) {
      const fd = openSync(
        `${this.dir}/slab-${slotBytes}.bin`,
        fsConstants.O_RDWR | fsConstants.O_CREAT,
        0o644,
      );
      slab = { slotBytes, fd };
      this.#slabs.set(slotBytes, slab);
    }
    return slab;
  }

  /** LRU order is updated in batches: one transaction a second, not a write a read. */
  #touch(entry: _Entry): void {
    this.#touched.set(entry.id, ++this.#clock);
    if (this.#flushTimer === undefined) {
      const timer = setTimeout(() => {
        this.#flushTimer = undefined;
        this.#flushTouches();
      }, 1000);
      Deno.unrefTimer(timer);
      this.#flushTimer = timer;
    }
  }

  /** On a full disk the updates wait, in memory, for the next flush. */
  #flushTouches(): void {
    this.#db.exec("BEGIN");
    try {
      for (const [id, at] of this.#touched) this.#q.touch.run(at, fromHex(id));
      for (const [name, value] of Object.entries(this.#stats)) this.#q.setCounter.run(name, value);
      this.#db.exec("COMMIT");
    } catch (err) {
      rollback(this.#db);
      if (!isDiskFull(err)) throw err;
      this.#noteDiskFull(err);
      return;
    }
    this.#touched.clear();
  }
}

function _slotBytesFor(length: number): number {
  let slot = MIN_SLOT_BYTES;
  while (slot < length) slot *= 2;
  return slot;
}
