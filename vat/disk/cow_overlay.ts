/**
 * The copy-on-write overlay: a running appliance's writes over a read-only base, at
 * chunk granularity (docs/CACHE.md, "Overlays"). Written chunks live in a sparse local
 * file at their disk offsets; a one-byte-per-chunk state map says, for each chunk,
 * whether it is the base's, the overlay's, or all zeroes. A partial write to a chunk
 * still in the base reads the base chunk first.
 *
 * Durability follows the block-device contract: after `flush()` every acknowledged
 * write survives a crash (the data file is synced, then the map is replaced
 * atomically); writes not yet flushed may be lost, never half-applied to the map.
 *
 * For user disks the overlay also tracks which chunks changed since the last
 * snapshot (the backup uploads them), and takes crash-consistent snapshots while the
 * guest keeps writing (docs/BACKUP.md, "Snapshots"): `beginSnapshot` freezes the set of
 * changed chunks at one instant; each is then handed to the snapshot's `save` either by
 * `saveForSnapshot` or, if the guest writes it first, just before that write lands
 * (copy-before-write). Until `endSnapshot(true)` the frozen chunks stay dirty in the
 * map on disk, so a crash mid-snapshot loses no change from the next one.
 *
 * @module
 */

import { ConflictError, IntegrityError, PermanentError } from "../errors.ts";
import { mapDiskFull, removeIfThere, writeFileAtomic } from "../fs_atomic.ts";
import { type BlockDevice, checkRange, settleAll } from "./block_device.ts";

/** A base an overlay can copy whole chunks from. */
export interface ChunkSource extends BlockDevice {
  /** Chunk `i` whole, or null when it is all zeroes. */
  readChunk(i: number): Promise<Uint8Array | null>;
}

/** Per-chunk states in the map file. */
const BASE = 0;
const DATA = 1;
const ZERO = 2;

const MAP_MAGIC = "VATOVL01";
const MAP_HEADER_BYTES = 24;

/** Receives a chunk's content as it was at a snapshot's instant (null: all zeroes). */
export type SnapshotSave = (i: number, content: Uint8Array | null) => Promise<void>;

/** A snapshot in progress. */
interface _Snapshot {
  frozen: number[];
  unsaved: Set<number>;
  save: SnapshotSave;
  failed: unknown;
}

/** Options of `CowOverlay.open`. */
export interface OverlayOptions {
  base: ChunkSource;
  /** The overlay's data file; its map is `${path}.map`, its dirty set `${path}.dirty`. */
  path: string;
  /** Throw away earlier writes (the system disk's lockdown at every boot). */
  discard?: boolean;
}

/** A writable `BlockDevice`: `base` plus local changes. */
export class CowOverlay implements BlockDevice {
  readonly sizeBytes: number;
  readonly readOnly = false;
  readonly preferredBlockBytes: number;
  readonly path: string;
  readonly #base: ChunkSource;
  readonly #file: Deno.FsFile;
  readonly #states: Uint8Array;
  readonly #dirty: Uint8Array;
  readonly #locks = new Map<number, Promise<void>>();
  #mapChanged = false;
  #closed = false;
  #snapshot: _Snapshot | null = null;

  private constructor(
    options: OverlayOptions,
    file: Deno.FsFile,
    states: Uint8Array,
    dirty: Uint8Array,
  ) {
    this.#base = options.base;
    this.path = options.path;
    this.sizeBytes = options.base.sizeBytes;
    this.preferredBlockBytes = options.base.preferredBlockBytes;
    this.#file = file;
    this.#states = states;
    this.#dirty = dirty;
  }

  /** Removes the overlay at `path` (its data file and maps), if there is one. */
  static async remove(path: string): Promise<void> {
    for (const suffix of ["", ".map", ".dirty"]) await removeIfThere(path + suffix);
  }

  /**
   * What is on disk at `path` without opening it: whether an overlay exists, and
   * whether its dirty map names chunks changed since the last snapshot.
   */
  static async inspect(path: string): Promise<{ exists: boolean; dirty: boolean }> {
    let dirty: Uint8Array;
    try {
      dirty = await Deno.readFile(`${path}.dirty`);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      const exists = await Deno.stat(`${path}.map`).then(() => true, () => false);
      return { exists, dirty: false };
    }
    return { exists: true, dirty: dirty.subarray(MAP_HEADER_BYTES).some((b) => b !== 0) };
  }

  /** Opens the overlay at `options.path`, creating it (or starting it afresh with `discard`). */
  static async open(options: OverlayOptions): Promise<CowOverlay> {
    const chunkBytes = options.base.preferredBlockBytes;
    const count = Math.ceil(options.base.sizeBytes / chunkBytes);
    if (options.discard) await CowOverlay.remove(options.path);
    const states = await _readMap(`${options.path}.map`, options.base.sizeBytes, chunkBytes, count);
    const dirty = await _readMap(
      `${options.path}.dirty`,
      options.base.sizeBytes,
      chunkBytes,
      count,
    );
    const file = await Deno.open(options.path, { read: true, write: true, create: true });
    return new CowOverlay(options, file, states, dirty);
  }

  get #chunkBytes(): number {
    return this.preferredBlockBytes;
  }

  /** Chunks changed since `clearDirty` last forgot them, ascending. */
  dirtyChunks(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.#dirty.length; i++) if (this.#dirty[i]) out.push(i);
    return out;
  }

  /** Forgets that `chunks` changed (their content was backed up). */
  clearDirty(chunks: Iterable<number>): void {
    for (const i of chunks) this.#dirty[i] = 0;
    this.#mapChanged = true;
  }

  /** Counts `chunks` as changed (e.g. every chunk, for a first backup). */
  markDirty(chunks: Iterable<number>): void {
    for (const i of chunks) this.#dirty[i] = 1;
    this.#mapChanged = true;
  }

  /** Bytes of the chunks changed since the last snapshot. */
  dirtyBytes(): number {
    let bytes = 0;
    for (let i = 0; i < this.#dirty.length; i++) if (this.#dirty[i]) bytes += this.#chunkLength(i);
    return bytes;
  }

  /**
   * Starts a snapshot of the disk as it is now and returns the chunks it changed since
   * the last snapshot. Each of them reaches `save` once, with its content as of now:
   * through `saveForSnapshot`, or before a write changes it. Synchronous, so that no
   * write lands between reading the dirty set and freezing it.
   */
  beginSnapshot(save: SnapshotSave): number[] {
    if (this.#snapshot) throw new ConflictError(`${this.path}: a snapshot is already being taken`);
    const frozen = this.dirtyChunks();
    for (const i of frozen) this.#dirty[i] = 0;
    this.#snapshot = { frozen, unsaved: new Set(frozen), save, failed: null };
    return frozen;
  }

  /** Hands chunk `i` to the snapshot's `save` unless a write already did. */
  async saveForSnapshot(i: number): Promise<void> {
    await this.#withChunk(i, () => this.#saveOld(i));
    const failed = this.#snapshot?.failed;
    if (failed) throw failed;
  }

  /**
   * Ends the snapshot. `committed`: its content is safely kept, so its chunks are no
   * longer dirty; otherwise they count as changed again, for the next snapshot.
   */
  endSnapshot(committed: boolean): void {
    const snapshot = this.#snapshot;
    if (!snapshot) return;
    if (!committed) { for (const i of snapshot.frozen) this.#dirty[i] = 1; }
    this.#snapshot = null;
    this.#mapChanged = true;
  }

  /** Saves chunk `i`'s current content for the snapshot, if it still waits for that. */
  async #saveOld(i: number): Promise<void> {
    const snapshot = this.#snapshot;
    if (!snapshot?.unsaved.has(i)) return;
    snapshot.unsaved.delete(i);
    if (snapshot.failed) return;
    try {
      await snapshot.save(i, await this.readChunk(i));
    } catch (err) {
      // The guest's write goes ahead; the snapshot is abandoned by its taker.
      snapshot.failed = err;
    }
  }

  /** Chunks whose content differs from the base (written or zeroed), ascending. */
  changedChunks(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.#states.length; i++) if (this.#states[i] !== BASE) out.push(i);
    return out;
  }

  /** Chunk `i` as the overlay sees it (a copy), or null when it is all zeroes. */
  async readChunk(i: number): Promise<Uint8Array | null> {
    switch (this.#states[i]) {
      case DATA: {
        const data = new Uint8Array(this.#chunkLength(i));
        this.#pread(i * this.#chunkBytes, data);
        return data;
      }
      case ZERO:
        return null;
      default:
        return await this.#base.readChunk(i);
    }
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    checkRange(this.sizeBytes, offset, into.length);
    const parts: Promise<void>[] = [];
    this.#eachPiece(offset, into.length, (i, from, to) => {
      const target = into.subarray(from - offset, to - offset);
      switch (this.#states[i]) {
        case DATA:
          this.#pread(from, target);
          break;
        case ZERO:
          target.fill(0);
          break;
        default:
          parts.push(this.#base.read(from, target));
      }
    });
    await settleAll(parts);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    checkRange(this.sizeBytes, offset, data.length);
    const parts: Promise<void>[] = [];
    this.#eachPiece(offset, data.length, (i, from, to) => {
      parts.push(
        this.#withChunk(i, async () => {
          await this.#saveOld(i);
          await this.#writePiece(i, from, data.subarray(from - offset, to - offset));
        }),
      );
    });
    await settleAll(parts);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    checkRange(this.sizeBytes, offset, length);
    const parts: Promise<void>[] = [];
    this.#eachPiece(offset, length, (i, from, to) => {
      parts.push(this.#withChunk(i, async () => {
        await this.#saveOld(i);
        if (to - from === this.#chunkLength(i)) {
          this.#setState(i, ZERO);
          return;
        }
        await this.#writePiece(i, from, new Uint8Array(to - from));
      }));
    });
    await settleAll(parts);
  }

  /** Trimmed ranges read back as zeroes (the NBD server advertises that). */
  trim(offset: number, length: number): Promise<void> {
    return this.writeZeroes(offset, length);
  }

  async flush(): Promise<void> {
    await Promise.all(this.#locks.values());
    // The maps written are the ones from before the data sync: a write that lands
    // during the sync must not be named by a map whose data may not be on disk.
    const changed = this.#mapChanged;
    const states = this.#states.slice();
    const dirty = this.#dirty.slice();
    // A snapshot's chunks stay dirty on disk until it is committed.
    for (const i of this.#snapshot?.frozen ?? []) dirty[i] = 1;
    this.#mapChanged = false;
    try {
      await this.#file.syncData();
      if (changed) {
        await _writeMap(`${this.path}.map`, states, this.sizeBytes, this.#chunkBytes);
        await _writeMap(`${this.path}.dirty`, dirty, this.sizeBytes, this.#chunkBytes);
      }
    } catch (err) {
      this.#mapChanged ||= changed;
      throw mapDiskFull(err, this.path);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
    this.#file.close();
  }

  #chunkLength(i: number): number {
    return Math.min(this.#chunkBytes, this.sizeBytes - i * this.#chunkBytes);
  }

  #eachPiece(offset: number, length: number, fn: (i: number, from: number, to: number) => void) {
    const chunkBytes = this.#chunkBytes;
    let at = offset;
    const end = offset + length;
    while (at < end) {
      const i = Math.floor(at / chunkBytes);
      const to = Math.min(end, (i + 1) * chunkBytes);
      fn(i, at, to);
      at = to;
    }
  }

  /** Runs `fn` with chunk `i` to itself: a copy-on-write is read-modify-write. */
  #withChunk(i: number, fn: () => Promise<void>): Promise<void> {
    const before = this.#locks.get(i) ?? Promise.resolve();
    const run = before.then(fn);
    const settled = run.catch(() => {});
    this.#locks.set(i, settled);
    settled.then(() => {
      if (this.#locks.get(i) === settled) this.#locks.delete(i);
    });
    return run;
  }

  async #writePiece(i: number, from: number, piece: Uint8Array): Promise<void> {
    const chunkStart = i * this.#chunkBytes;
    if (this.#states[i] === DATA || piece.length === this.#chunkLength(i)) {
      this.#pwrite(from, piece);
    } else {
      const whole = (this.#states[i] === BASE ? await this.#base.readChunk(i) : null) ??
        new Uint8Array(this.#chunkLength(i));
      const copy = whole.slice();
      copy.set(piece, from - chunkStart);
      this.#pwrite(chunkStart, copy);
    }
    this.#setState(i, DATA);
  }

  #setState(i: number, state: number): void {
    this.#states[i] = state;
    this.#dirty[i] = 1;
    this.#mapChanged = true;
  }

  // Seek and read/write run with no await between them, so concurrent requests on
  // the one file handle never interleave.
  #pread(offset: number, into: Uint8Array): void {
    let filled = 0;
    while (filled < into.length) {
      this.#file.seekSync(offset + filled, Deno.SeekMode.Start);
      const n = this.#file.readSync(into.subarray(filled));
      if (n === null || n === 0) {
        into.fill(0, filled); // beyond the sparse file's end: never written
        return;
      }
      filled += n;
    }
  }

  #pwrite(offset: number, data: Uint8Array): void {
    try {
      let written = 0;
      while (written < data.length) {
        this.#file.seekSync(offset + written, Deno.SeekMode.Start);
        written += this.#file.writeSync(data.subarray(written));
      }
    } catch (err) {
      const mapped = mapDiskFull(err, this.path);
      if (mapped instanceof PermanentError) throw mapped;
      throw err;
    }
  }
}

async function _readMap(path: string, sizeBytes: number, chunkBytes: number, count: number) {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return new Uint8Array(count);
    throw err;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (
    bytes.length !== MAP_HEADER_BYTES + count ||
    new TextDecoder().decode(bytes.subarray(0, 8)) !== MAP_MAGIC ||
    view.getBigUint64(8) !== BigInt(sizeBytes) || view.getUint32(16) !== chunkBytes
  ) {
    throw new IntegrityError(
      `overlay map ${path} does not match this disk (${sizeBytes} bytes in ${chunkBytes}-byte chunks); ` +
        `it belongs to another disk or is damaged`,
    );
  }
  return bytes.slice(MAP_HEADER_BYTES);
}

async function _writeMap(path: string, states: Uint8Array, sizeBytes: number, chunkBytes: number) {
  const bytes = new Uint8Array(MAP_HEADER_BYTES + states.length);
  const view = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode(MAP_MAGIC));
  view.setBigUint64(8, BigInt(sizeBytes));
  view.setUint32(16, chunkBytes);
  bytes.set(states, MAP_HEADER_BYTES);
  await writeFileAtomic(path, bytes);
}
