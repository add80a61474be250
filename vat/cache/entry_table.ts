/**
 * `EntryTable`: the chunk cache's index rows kept in memory (hash → slot), in flat typed
 * arrays: about 90 bytes a row (a 32-byte hash, three numbers, half the buckets empty),
 * where a `Map` of hex strings to objects took about 470, so the rows of a 4 GiB disk
 * fit in 6 MB instead of 30.
 *
 * @module
 */

const _HASH_BYTES = 32;

/** Where a cached chunk is: its slot size, slot and length. */
export interface SlotRef {
  slotBytes: number;
  slot: number;
  length: number;
}

/**
 * At most `maxEntries` rows, by hash (open addressing, linear probing). When a row is
 * added to a full table every row is forgotten first: a forgotten row costs its owner
 * one lookup in SQLite, so a simple bound beats an order kept per row.
 */
export class EntryTable {
  readonly maxEntries: number;
  readonly #mask: number;
  readonly #hashes: Uint8Array;
  /** 0 marks an empty bucket (no slot is 0 bytes). */
  readonly #slotBytes: Uint32Array;
  readonly #slots: Uint32Array;
  readonly #lengths: Uint32Array;
  #size = 0;

  constructor(maxEntries: number) {
    if (!(maxEntries >= 1)) throw new RangeError(`maxEntries ${maxEntries} is not positive`);
    this.maxEntries = maxEntries;
    let buckets = 16;
    while (buckets < maxEntries * 2) buckets *= 2;
    this.#mask = buckets - 1;
    this.#hashes = new Uint8Array(buckets * _HASH_BYTES);
    this.#slotBytes = new Uint32Array(buckets);
    this.#slots = new Uint32Array(buckets);
    this.#lengths = new Uint32Array(buckets);
  }

  /** Rows held. */
  get size(): number {
    return this.#size;
  }

  /** The row of `hash` (a 32-byte hash), if held. */
  get(hash: Uint8Array): SlotRef | undefined {
    const i = this.#find(hash);
    if (i < 0) return undefined;
    return { slotBytes: this.#slotBytes[i], slot: this.#slots[i], length: this.#lengths[i] };
  }

  /** Adds or replaces the row of `hash`; a full table forgets every row first. */
  set(hash: Uint8Array, ref: SlotRef): void {
    if (ref.slotBytes <= 0) throw new RangeError("a slot has a positive size");
    let i = this.#find(hash);
    if (i < 0) {
      if (this.#size >= this.maxEntries) {
        this.clear();
        i = this.#find(hash);
      }
      i = -1 - i;
      this.#hashes.set(hash.subarray(0, _HASH_BYTES), i * _HASH_BYTES);
      this.#size++;
    }
    this.#slotBytes[i] = ref.slotBytes;
    this.#slots[i] = ref.slot;
    this.#lengths[i] = ref.length;
  }

  /** Forgets the row of `hash`, if held. */
  delete(hash: Uint8Array): void {
    let i = this.#find(hash);
    if (i < 0) return;
    const mask = this.#mask;
    // Backward-shift deletion: later rows of the same probe run move up into the gap.
    for (let j = (i + 1) & mask; this.#slotBytes[j] !== 0; j = (j + 1) & mask) {
      const home = this.#homeOfBucket(j);
      // Row j may fill the gap at i unless its home lies cyclically in (i, j].
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (stays) continue;
      this.#hashes.copyWithin(i * _HASH_BYTES, j * _HASH_BYTES, (j + 1) * _HASH_BYTES);
      this.#slotBytes[i] = this.#slotBytes[j];
      this.#slots[i] = this.#slots[j];
      this.#lengths[i] = this.#lengths[j];
      i = j;
    }
    this.#slotBytes[i] = 0;
    this.#size--;
  }

  /** Forgets every row. */
  clear(): void {
    this.#slotBytes.fill(0);
    this.#size = 0;
  }

  /** The bucket holding `hash`, or -1 - the empty bucket where it would go. */
  #find(hash: Uint8Array): number {
    const hashes = this.#hashes;
    for (let i = this.#home(hash, 0);; i = (i + 1) & this.#mask) {
      if (this.#slotBytes[i] === 0) return -1 - i;
      const at = i * _HASH_BYTES;
      let same = true;
      for (let k = 0; k < _HASH_BYTES; k++) {
        if (hashes[at + k] !== hash[k]) {
          same = false;
          break;
        }
      }
      if (same) return i;
    }
  }

  #home(bytes: Uint8Array, at: number): number {
    return ((bytes[at] | bytes[at + 1] << 8 | bytes[at + 2] << 16 | bytes[at + 3] << 24) >>> 0) &
      this.#mask;
  }

  #homeOfBucket(i: number): number {
    return this.#home(this.#hashes, i * _HASH_BYTES);
  }
}
