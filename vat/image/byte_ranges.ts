/**
 * Byte ranges of a disk, and the few operations publish needs on sorted lists of them.
 *
 * @module
 */

/** `length` bytes starting at disk byte `offset`. */
export interface ByteRange {
  offset: number;
  length: number;
}

/** Reads `length` bytes at disk byte `offset`; may return fewer only at the disk's end. */
export type ReadAt = (offset: number, length: number) => Promise<Uint8Array>;

/** A `ReadAt` over an open file (or block device). */
export function fileReadAt(file: Deno.FsFile): ReadAt {
  return async function readFileAt(offset, length) {
    const buf = new Uint8Array(length);
    await file.seek(offset, Deno.SeekMode.Start);
    let filled = 0;
    while (filled < length) {
      const n = await file.read(buf.subarray(filled));
      if (n === null) break;
      filled += n;
    }
    return buf.subarray(0, filled);
  };
}

/** Sorts `ranges` and merges overlapping and touching ones; drops empty ones. */
export function mergeRanges(ranges: readonly ByteRange[]): ByteRange[] {
  const sorted = ranges.filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const out: ByteRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset);
    } else {
      out.push({ offset: r.offset, length: r.length });
    }
  }
  return out;
}

/** Total length of `ranges` (which must not overlap). */
export function totalLength(ranges: readonly ByteRange[]): number {
  let sum = 0;
  for (const r of ranges) sum += r.length;
  return sum;
}

/**
 * Zeroes, in `buf` (the disk bytes starting at `bufOffset`), every byte that lies in one
 * of `ranges` (sorted, merged). Binary search finds the first range, so it costs
 * O(log n + ranges touched) per call.
 */
export function zeroRanges(buf: Uint8Array, bufOffset: number, ranges: readonly ByteRange[]) {
  const end = bufOffset + buf.length;
  let lo = 0;
  let hi = ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ranges[mid].offset + ranges[mid].length <= bufOffset) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < ranges.length && ranges[i].offset < end; i++) {
    const from = Math.max(ranges[i].offset, bufOffset) - bufOffset;
    const to = Math.min(ranges[i].offset + ranges[i].length, end) - bufOffset;
    buf.fill(0, from, to);
  }
}

/** Whether `ranges` (sorted, merged) cover every byte of [offset, offset + length). */
export function coversFully(ranges: readonly ByteRange[], offset: number, length: number): boolean {
  let lo = 0;
  let hi = ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ranges[mid].offset + ranges[mid].length <= offset) lo = mid + 1;
    else hi = mid;
  }
  const r = ranges[lo];
  return r !== undefined && r.offset <= offset && r.offset + r.length >= offset + length;
}
