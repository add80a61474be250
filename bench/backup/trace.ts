/**
 * A synthetic user-disk write trace shaped like the office traces of the Collective
 * paper (NSDI '05, section 4.4): users work in active periods made of short bursts of
 * writes (a document saved, mail arriving, a database touched) separated by think
 * time, and go idle (no input for five minutes, the paper's threshold) between them.
 * The trace holds only the user-data share of the writes (3.3 % of all writes in the
 * paper's traces): system and ephemeral writes go to disks vat does not back up.
 *
 * The model, all drawn from one seeded generator so every run replays the same bytes:
 *
 * - The disk is a file system in miniature: a journal (a circular log of small
 *   metadata writes), inode blocks (rewritten in place, a hot set), and a data area
 *   where files are allocated one after the other. Before the session the disk already
 *   holds the user's files, a mailbox and a mail index (`initialWrites`).
 * - Active periods last `activeMedianMs` (log-normal); between them the user is away
 *   for the five-minute threshold plus `awayMedianMs` (log-normal). Inside one, bursts
 *   follow each other after exponential think times (mean `thinkMeanMs`, always below
 *   the threshold).
 * - A burst is one of: a new file (size log-normal around `fileMedianBytes`, capped at
 *   `fileMaxBytes`); a save of a recently used file (office documents change in every
 *   block, text files from the edit point on, but the whole file is written, so some
 *   writes leave chunks unchanged); mail appended to the mailbox (and its header
 *   rewritten); a few blocks of the mail index updated. Every burst also writes a few
 *   journal and inode blocks.
 * - Content is made per 4 KiB block from a seed (file, block, version): office
 *   documents and the mail index are incompressible (zip, binary), text files and mail
 *   compress about 2.5:1 with zstd, metadata blocks are mostly zeroes.
 *
 * @module
 */

const KiB = 1024;
const MiB = 1024 * KiB;

/** Bytes of one guest block: writes are whole blocks. */
export const BLOCK_BYTES = 4 * KiB;
/** The largest single write request the guest issues (a burst is split into these). */
const _MAX_WRITE_BYTES = 256 * KiB;

/** The parameters of a trace. */
export interface TraceShape {
  seed: number;
  diskBytes: number;
  /** Simulated length of the session, from the first write to the user logging off. */
  sessionMs: number;
  /** The user's data already on the disk when the session starts. */
  initialBytes: number;
  /** No input for this long makes the user idle (the paper: five minutes). */
  idleThresholdMs: number;
  activeMedianMs: number;
  activeSigma: number;
  /** Time away beyond the idle threshold. */
  awayMedianMs: number;
  awaySigma: number;
  thinkMeanMs: number;
  fileMedianBytes: number;
  fileSigma: number;
  fileMaxBytes: number;
  /** Shares of the burst kinds: new file, save of a recent file, mail, index update. */
  mix: { create: number; save: number; mail: number; index: number };
}

/** How a block's content is made. */
export type ContentKind = "random" | "text" | "metadata";

/** One write request: whole blocks at a block-aligned offset, each made from a seed. */
export interface GuestWrite {
  offsetBytes: number;
  kind: ContentKind;
  seeds: Uint32Array;
}

/** Something the user does at a moment of simulated time. */
export type TraceEvent =
  | { type: "burst"; atMs: number; writes: GuestWrite[] }
  /** No input since five minutes: the user went idle (the paper's measuring point). */
  | { type: "idle"; atMs: number }
  /** The user goes idle for the last time and logs off: the appliance stops. */
  | { type: "end"; atMs: number };

/** A generated trace. */
export interface Trace {
  shape: TraceShape;
  /** The disk's content before the session (already backed up when it starts). */
  initialWrites: GuestWrite[];
  /** In time order. */
  events: TraceEvent[];
}

/** A small seeded generator (the "mulberry32" mixing steps): uniform, normal, log-normal. */
export class Prng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** A whole number in [0, n). */
  below(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  logNormal(median: number, sigma: number): number {
    return median * Math.exp(sigma * this.normal());
  }

  exponential(mean: number): number {
    return -mean * Math.log(1 - this.next());
  }
}

/** A file of the miniature file system. */
interface _File {
  id: number;
  offsetBytes: number;
  blocks: number;
  kind: ContentKind;
  /** Each block's content version; a save bumps the ones it changes. */
  versions: Uint32Array;
  /** Office documents change everywhere when saved; text files from the edit on. */
  wholeChange: boolean;
}

/** Where the miniature file system keeps what. */
const _JOURNAL = { offsetBytes: 4 * MiB, bytes: 32 * MiB };
const _INODES = { offsetBytes: 36 * MiB, bytes: 28 * MiB };
const _DATA_START = 64 * MiB;

/** Generates the trace `shape` describes. */
export function generateTrace(shape: TraceShape): Trace {
  const rng = new Prng(shape.seed);
  const fs = new _FileSystem(shape, rng);
  const initialWrites = fs.populate();
  const events: TraceEvent[] = [];
  let t = 0;
  for (;;) {
    const activeEnd = t + rng.logNormal(shape.activeMedianMs, shape.activeSigma);
    let last = t;
    for (let at = t; at < activeEnd && at < shape.sessionMs; at += _thinkMs(shape, rng)) {
      events.push({ type: "burst", atMs: Math.round(at), writes: fs.burst() });
      last = at;
    }
    const idleAt = Math.round(last + shape.idleThresholdMs);
    const away = shape.idleThresholdMs + rng.logNormal(shape.awayMedianMs, shape.awaySigma);
    if (last + away >= shape.sessionMs) {
      events.push({ type: "end", atMs: idleAt });
      return { shape, initialWrites, events };
    }
    events.push({ type: "idle", atMs: idleAt });
    t = last + away;
  }
}

function _thinkMs(shape: TraceShape, rng: Prng): number {
  return Math.min(rng.exponential(shape.thinkMeanMs), shape.idleThresholdMs - 1000);
}

class _FileSystem {
  readonly #shape: TraceShape;
  readonly #rng: Prng;
  #nextId = 1;
  #allocAt = _DATA_START;
  /** Recently used files last. */
  readonly #recent: _File[] = [];
  #mailbox!: _File;
  #mailboxUsed = 0;
  #index!: _File;
  #journalAt = 0;
  #journalLap = 1;
  #burst = 0;

  constructor(shape: TraceShape, rng: Prng) {
    this.#shape = shape;
    this.#rng = rng;
  }

  /** The user's files before the session: documents, a mailbox with room to grow, an index. */
  populate(): GuestWrite[] {
    const writes: GuestWrite[] = [];
    const mailBytes = _roundUp(this.#shape.initialBytes / 8);
    this.#mailbox = this.#allocate("text", mailBytes * 2, false);
    this.#mailboxUsed = mailBytes / BLOCK_BYTES;
    writes.push(...this.#writeBlocks(this.#mailbox, 0, this.#mailboxUsed));
    this.#index = this.#allocate("random", 8 * MiB, false);
    writes.push(...this.#writeBlocks(this.#index, 0, this.#index.blocks));
    let bytes = mailBytes + 8 * MiB;
    while (bytes < this.#shape.initialBytes) {
      const file = this.#newFile(4);
      writes.push(...this.#writeBlocks(file, 0, file.blocks));
      bytes += file.blocks * BLOCK_BYTES;
    }
    return writes;
  }

  /** One burst's writes. */
  burst(): GuestWrite[] {
    this.#burst++;
    const { mix } = this.#shape;
    const r = this.#rng.next() * (mix.create + mix.save + mix.mail + mix.index);
    const writes: GuestWrite[] = [];
    let touched: _File;
    if (r < mix.create || this.#recent.length === 0) {
      touched = this.#newFile(1);
      writes.push(...this.#writeBlocks(touched, 0, touched.blocks));
    } else if (r < mix.create + mix.save) {
      touched = this.#pickRecent();
      const from = touched.wholeChange ? 0 : this.#rng.below(touched.blocks);
      for (let b = from; b < touched.blocks; b++) touched.versions[b]++;
      writes.push(...this.#writeBlocks(touched, 0, touched.blocks));
    } else if (r < mix.create + mix.save + mix.mail) {
      touched = this.#mailbox;
      const room = touched.blocks - this.#mailboxUsed;
      const add = Math.min(room, _roundUp(this.#rng.logNormal(16 * KiB, 1)) / BLOCK_BYTES);
      writes.push(...this.#writeBlocks(touched, this.#mailboxUsed, add));
      this.#mailboxUsed += add;
      touched.versions[0]++;
      writes.push(...this.#writeBlocks(touched, 0, 1));
    } else {
      touched = this.#index;
      const n = 1 + this.#rng.below(16);
      for (let i = 0; i < n; i++) {
        const b = this.#rng.below(touched.blocks);
        touched.versions[b]++;
        writes.push(...this.#writeBlocks(touched, b, 1));
      }
    }
    writes.push(...this.#metadata(touched));
    return writes;
  }

  /** Journal blocks (a circular log) and the touched file's inode block. */
  #metadata(file: _File): GuestWrite[] {
    const journalBlocks = _JOURNAL.bytes / BLOCK_BYTES;
    const n = 2 + this.#rng.below(7);
    const seeds = new Uint32Array(n);
    const start = this.#journalAt;
    for (let i = 0; i < n; i++) seeds[i] = _seedOf(0, start + i, this.#journalLap);
    if (start + n > journalBlocks) {
      this.#journalAt = 0;
      this.#journalLap++;
      return this.#metadata(file);
    }
    this.#journalAt += n;
    const inodeBlock = (file.id * 7) % (_INODES.bytes / BLOCK_BYTES);
    return [
      { offsetBytes: _JOURNAL.offsetBytes + start * BLOCK_BYTES, kind: "metadata", seeds },
      {
        offsetBytes: _INODES.offsetBytes + inodeBlock * BLOCK_BYTES,
        kind: "metadata",
        seeds: Uint32Array.of(_seedOf(1, inodeBlock, this.#burst)),
      },
    ];
  }

  /** Files saved again are mostly the ones used last (a geometric pick from the end). */
  #pickRecent(): _File {
    let i = this.#recent.length - 1;
    while (i > 0 && this.#rng.next() < 0.6) i--;
    const [file] = this.#recent.splice(i, 1);
    this.#recent.push(file);
    return file;
  }

  #newFile(scale: number): _File {
    const bytes = Math.min(
      this.#shape.fileMaxBytes,
      this.#rng.logNormal(this.#shape.fileMedianBytes * scale, this.#shape.fileSigma),
    );
    const office = this.#rng.next() < 0.45;
    const file = this.#allocate(office ? "random" : "text", _roundUp(bytes), office);
    this.#recent.push(file);
    return file;
  }

  #allocate(kind: ContentKind, bytes: number, wholeChange: boolean): _File {
    if (this.#allocAt + bytes > this.#shape.diskBytes) this.#allocAt = _DATA_START; // reuse
    const file: _File = {
      id: this.#nextId++,
      offsetBytes: this.#allocAt,
      blocks: bytes / BLOCK_BYTES,
      kind,
      versions: new Uint32Array(bytes / BLOCK_BYTES).fill(1),
      wholeChange,
    };
    this.#allocAt += bytes;
    return file;
  }

  #writeBlocks(file: _File, from: number, count: number): GuestWrite[] {
    const out: GuestWrite[] = [];
    const perWrite = _MAX_WRITE_BYTES / BLOCK_BYTES;
    for (let b = from; b < from + count; b += perWrite) {
      const n = Math.min(perWrite, from + count - b);
      const seeds = new Uint32Array(n);
      for (let i = 0; i < n; i++) seeds[i] = _seedOf(file.id, b + i, file.versions[b + i]);
      out.push({ offsetBytes: file.offsetBytes + b * BLOCK_BYTES, kind: file.kind, seeds });
    }
    return out;
  }
}

function _roundUp(bytes: number): number {
  return Math.max(BLOCK_BYTES, Math.ceil(bytes / BLOCK_BYTES) * BLOCK_BYTES);
}

/** A 32-bit seed from a block's identity (an integer hash of the three numbers). */
function _seedOf(fileId: number, block: number, version: number): number {
  let h = Math.imul(fileId ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ block, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ version, 0x27d4eb2f);
  return (h ^ (h >>> 15)) >>> 0;
}

/** The payload of `write`: its blocks, each made from its seed. */
export function payloadOf(write: GuestWrite): Uint8Array {
  const out = new Uint8Array(write.seeds.length * BLOCK_BYTES);
  for (let i = 0; i < write.seeds.length; i++) {
    _fillBlock(out.subarray(i * BLOCK_BYTES, (i + 1) * BLOCK_BYTES), write.seeds[i], write.kind);
  }
  return out;
}

/** Words of the made-up language of text blocks, more frequent first. */
const _WORDS: Uint8Array[] = (() => {
  const rng = new Prng(0x7e57);
  const words: Uint8Array[] = [];
  for (let i = 0; i < 2000; i++) {
    const length = 2 + rng.below(9);
    const word = new Uint8Array(length + 1);
    for (let j = 0; j < length; j++) word[j] = 97 + rng.below(26);
    word[length] = rng.next() < 0.08 ? 10 : 32; // newline or space
    words.push(word);
  }
  return words;
})();

function _fillBlock(block: Uint8Array, seed: number, kind: ContentKind): void {
  let x = seed | 1;
  const step = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  if (kind === "random") {
    const words = new Uint32Array(block.buffer, block.byteOffset, block.length / 4);
    for (let i = 0; i < words.length; i++) words[i] = step();
    return;
  }
  if (kind === "metadata") {
    // A header, a few records, the rest zeroes: what journal and inode blocks look like.
    const words = new Uint32Array(block.buffer, block.byteOffset, block.length / 4);
    for (let i = 0; i < 64; i++) words[(i * 17) % words.length] = step();
    return;
  }
  let at = 0;
  while (at < block.length) {
    // Squaring the uniform draw makes the first words of the vocabulary the common ones.
    const u = step() / 4294967296;
    const word = _WORDS[Math.floor(u * u * _WORDS.length)];
    const n = Math.min(word.length, block.length - at);
    block.set(word.subarray(0, n), at);
    at += n;
  }
}

/** What the session (not the initial data) writes. */
export interface TraceTotals {
  bursts: number;
  idlePoints: number;
  writes: number;
  /** Bytes the guest writes, counting every rewrite. */
  writtenBytes: number;
  /** Distinct 4 KiB blocks written, in bytes. */
  distinctBlockBytes: number;
  /** Distinct chunks of `chunkBytes` written to, in bytes: what changed at chunk granularity. */
  distinctChunkBytes: number;
  /** The distinct chunks' indexes, ascending. */
  dirtyChunks: number[];
}

/** Totals of `trace`'s session, at chunk size `chunkBytes`. */
export function traceTotals(trace: Trace, chunkBytes: number): TraceTotals {
  const blocks = new Set<number>();
  const chunks = new Set<number>();
  const totals = { bursts: 0, idlePoints: 0, writes: 0, writtenBytes: 0 };
  for (const event of trace.events) {
    if (event.type !== "burst") {
      totals.idlePoints++;
      continue;
    }
    totals.bursts++;
    for (const w of event.writes) {
      totals.writes++;
      totals.writtenBytes += w.seeds.length * BLOCK_BYTES;
      for (let i = 0; i < w.seeds.length; i++) {
        const at = w.offsetBytes + i * BLOCK_BYTES;
        blocks.add(at / BLOCK_BYTES);
        chunks.add(Math.floor(at / chunkBytes));
      }
    }
  }
  return {
    ...totals,
    distinctBlockBytes: blocks.size * BLOCK_BYTES,
    distinctChunkBytes: chunks.size * chunkBytes,
    dirtyChunks: [...chunks].sort((a, b) => a - b),
  };
}
