/**
 * `AccessMap`: how a disk is used, region by region: bytes the guest read and wrote,
 * and chunks fetched from the repository because the cache lacked them. A disk is cut
 * into at most `DEFAULT_REGIONS` regions of whole chunks, so the map of a 4 GiB disk
 * is as small as that of a 32 MiB one; the appliance page draws it as a strip per disk
 * (the access heat map), and `vat stats` prints it.
 *
 * @module
 */

/** How many regions a disk is cut into, at most. */
export const DEFAULT_REGIONS = 256;

/** Counters of one disk, as numbers per region. */
export interface AccessCounts {
  sizeBytes: number;
  chunkBytes: number;
  /** Bytes per region (whole chunks; the last region may be shorter). */
  regionBytes: number;
  readBytes: number[];
  writtenBytes: number[];
  fetchedChunks: number[];
}

/** Per-region counters of one disk. */
export class AccessMap {
  readonly sizeBytes: number;
  readonly chunkBytes: number;
  readonly regionBytes: number;
  readonly regions: number;
  readonly #read: Float64Array;
  readonly #written: Float64Array;
  readonly #fetched: Float64Array;

  constructor(sizeBytes: number, chunkBytes: number, maxRegions = DEFAULT_REGIONS) {
    this.sizeBytes = sizeBytes;
    this.chunkBytes = chunkBytes;
    const chunks = Math.max(1, Math.ceil(sizeBytes / chunkBytes));
    const chunksPerRegion = Math.ceil(chunks / maxRegions);
    this.regionBytes = chunksPerRegion * chunkBytes;
    this.regions = Math.ceil(chunks / chunksPerRegion);
    this.#read = new Float64Array(this.regions);
    this.#written = new Float64Array(this.regions);
    this.#fetched = new Float64Array(this.regions);
  }

  /** The region holding chunk `chunk`. */
  regionOfChunk(chunk: number): number {
    return Math.floor((chunk * this.chunkBytes) / this.regionBytes);
  }

  /** Counts a read of `length` bytes at `offset`. */
  countRead(offset: number, length: number): void {
    this.#spread(this.#read, offset, length);
  }

  /** Counts a write (or trim, or write-zeroes) of `length` bytes at `offset`. */
  countWrite(offset: number, length: number): void {
    this.#spread(this.#written, offset, length);
  }

  /** Counts chunk `chunk` fetched from the repository. */
  countFetch(chunk: number): void {
    this.#fetched[this.regionOfChunk(chunk)]++;
  }

  /** The counters now (copies). */
  counts(): AccessCounts {
    return {
      sizeBytes: this.sizeBytes,
      chunkBytes: this.chunkBytes,
      regionBytes: this.regionBytes,
      readBytes: Array.from(this.#read),
      writtenBytes: Array.from(this.#written),
      fetchedChunks: Array.from(this.#fetched),
    };
  }

  #spread(counters: Float64Array, offset: number, length: number): void {
    let at = offset;
    const end = Math.min(offset + length, this.sizeBytes);
    while (at < end) {
      const region = Math.floor(at / this.regionBytes);
      const regionEnd = Math.min((region + 1) * this.regionBytes, end);
      counters[region] += regionEnd - at;
      at = regionEnd;
    }
  }
}
