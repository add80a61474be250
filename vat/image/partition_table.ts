/**
 * Reads a disk's partition table: MBR (with logical partitions in an extended one) or
 * GPT (512- or 4096-byte sectors). Every field is checked; a table that does not check
 * out (bad CRC, entries outside the disk, overlapping partitions) is reported as
 * `invalid`, never guessed at, because callers use partitions to decide which bytes
 * of a disk no one uses.
 *
 * @module
 */

import type { ReadAt } from "./byte_ranges.ts";
import { crc32 } from "./_checksums.ts";

/** One partition: where it lies on the disk and what the table says it holds. */
export interface Partition {
  offset: number;
  sizeBytes: number;
  /** MBR type byte as two hex digits ("83"), or GPT type GUID in lowercase. */
  type: string;
}

/** What `readPartitionTable` found. */
export type PartitionTable =
  /** No MBR signature, or an MBR whose entries are all empty. */
  | { kind: "none" }
  | { kind: "mbr" | "gpt"; partitions: Partition[] }
  /** Something that looks like a table but does not check out. */
  | { kind: "invalid"; reason: string };

const MBR_SECTOR = 512;
const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
const GPT_PROTECTIVE = 0xee;
/** Bounds on what a GPT may ask us to read. */
const GPT_MAX_ENTRY_BYTES = 4096;
const GPT_MAX_ARRAY_BYTES = 4 * 1024 * 1024;
const MAX_LOGICAL_PARTITIONS = 128;

/** Reads and checks the partition table of a disk of `sizeBytes`. */
export async function readPartitionTable(
  read: ReadAt,
  sizeBytes: number,
): Promise<PartitionTable> {
  if (sizeBytes < MBR_SECTOR) return { kind: "none" };
  const mbr = await read(0, MBR_SECTOR);
  if (mbr.length < MBR_SECTOR || mbr[510] !== 0x55 || mbr[511] !== 0xaa) return { kind: "none" };
  const view = new DataView(mbr.buffer, mbr.byteOffset, MBR_SECTOR);
  const entries = [];
  for (let i = 0; i < 4; i++) {
    const at = 446 + 16 * i;
    const status = mbr[at];
    // Anything but 0x00/0x80 means this sector is a boot record, not a partition table.
    if (status !== 0x00 && status !== 0x80) return { kind: "none" };
    entries.push({
      type: mbr[at + 4],
      start: view.getUint32(at + 8, true),
      count: view.getUint32(at + 12, true),
    });
  }
  const used = entries.filter((e) => e.type !== 0);
  if (used.length === 0) return { kind: "none" };
  if (used.some((e) => e.type === GPT_PROTECTIVE)) return await _readGpt(read, sizeBytes);

  const partitions: Partition[] = [];
  for (const e of used) {
    if (e.start === 0 || e.count === 0 || (e.start + e.count) * MBR_SECTOR > sizeBytes) {
      return { kind: "invalid", reason: `MBR entry type ${_hex2(e.type)} lies outside the disk` };
    }
    if (EXTENDED_TYPES.has(e.type)) {
      const logical = await _readLogical(read, e.start, e.count);
      if (typeof logical === "string") return { kind: "invalid", reason: logical };
      partitions.push(...logical);
    } else {
      partitions.push({
        offset: e.start * MBR_SECTOR,
        sizeBytes: e.count * MBR_SECTOR,
        type: _hex2(e.type),
      });
    }
  }
  return _checked("mbr", partitions);
}

/** Follows the chain of extended boot records; returns the logical partitions or why not. */
async function _readLogical(
  read: ReadAt,
  extStart: number,
  extCount: number,
): Promise<Partition[] | string> {
  const out: Partition[] = [];
  let ebr = extStart;
  const seen = new Set<number>();
  for (let n = 0; n < MAX_LOGICAL_PARTITIONS; n++) {
    if (seen.has(ebr)) return "extended partition chain loops";
    seen.add(ebr);
    const sector = await read(ebr * MBR_SECTOR, MBR_SECTOR);
    if (sector.length < MBR_SECTOR || sector[510] !== 0x55 || sector[511] !== 0xaa) {
      return `extended boot record at sector ${ebr} has no signature`;
    }
    const v = new DataView(sector.buffer, sector.byteOffset, MBR_SECTOR);
    const type = sector[446 + 4];
    const start = v.getUint32(446 + 8, true);
    const count = v.getUint32(446 + 12, true);
    if (type !== 0) {
      const abs = ebr + start;
      if (start === 0 || count === 0 || abs + count > extStart + extCount) {
        return `logical partition at sector ${abs} lies outside its extended partition`;
      }
      out.push({ offset: abs * MBR_SECTOR, sizeBytes: count * MBR_SECTOR, type: _hex2(type) });
    }
    const nextType = sector[462 + 4];
    const nextStart = v.getUint32(462 + 8, true);
    if (nextType === 0 || nextStart === 0) return out;
    if (!EXTENDED_TYPES.has(nextType) || nextStart >= extCount) {
      return `extended boot record at sector ${ebr} links outside its extended partition`;
    }
    ebr = extStart + nextStart;
  }
  return "too many logical partitions";
}

async function _readGpt(read: ReadAt, sizeBytes: number): Promise<PartitionTable> {
  for (const sector of [512, 4096]) {
    if (sizeBytes < sector * 2) continue;
    const header = await read(sector, sector);
    if (header.length < sector || new TextDecoder().decode(header.subarray(0, 8)) !== "EFI PART") {
      continue;
    }
    return await _readGptAt(read, sizeBytes, sector, header);
  }
  return { kind: "invalid", reason: "protective MBR but no GPT header" };
}

async function _readGptAt(
  read: ReadAt,
  sizeBytes: number,
  sector: number,
  header: Uint8Array,
): Promise<PartitionTable> {
  const v = new DataView(header.buffer, header.byteOffset, header.length);
  const headerBytes = v.getUint32(12, true);
  if (headerBytes < 92 || headerBytes > sector) {
    return { kind: "invalid", reason: `GPT header size ${headerBytes} is out of range` };
  }
  const copy = header.slice(0, headerBytes);
  new DataView(copy.buffer).setUint32(16, 0, true);
  if (crc32(copy) !== v.getUint32(16, true)) {
    return { kind: "invalid", reason: "GPT header checksum does not match" };
  }
  const sectors = Math.floor(sizeBytes / sector);
  const myLba = _u64(v, 24);
  const firstUsable = _u64(v, 40);
  const lastUsable = _u64(v, 48);
  const entriesLba = _u64(v, 72);
  const count = v.getUint32(80, true);
  const entryBytes = v.getUint32(84, true);
  if (myLba !== 1 || firstUsable > lastUsable || lastUsable >= sectors) {
    return { kind: "invalid", reason: "GPT header describes a different disk" };
  }
  if (entryBytes < 128 || entryBytes > GPT_MAX_ENTRY_BYTES || entryBytes % 8 !== 0) {
    return { kind: "invalid", reason: `GPT entry size ${entryBytes} is out of range` };
  }
  const arrayBytes = count * entryBytes;
  if (
    arrayBytes > GPT_MAX_ARRAY_BYTES || entriesLba < 2 ||
    entriesLba * sector + arrayBytes > sizeBytes
  ) {
    return { kind: "invalid", reason: "GPT partition array lies outside the disk" };
  }
  const array = await read(entriesLba * sector, arrayBytes);
  if (array.length < arrayBytes || crc32(array) !== v.getUint32(88, true)) {
    return { kind: "invalid", reason: "GPT partition array checksum does not match" };
  }
  const av = new DataView(array.buffer, array.byteOffset, array.length);
  const partitions: Partition[] = [];
  for (let i = 0; i < count; i++) {
    const at = i * entryBytes;
    const typeGuid = array.subarray(at, at + 16);
    if (typeGuid.every((b) => b === 0)) continue;
    const first = _u64(av, at + 32);
    const last = _u64(av, at + 40);
    if (first < firstUsable || last > lastUsable || last < first) {
      return { kind: "invalid", reason: `GPT entry ${i + 1} lies outside the usable sectors` };
    }
    partitions.push({
      offset: first * sector,
      sizeBytes: (last - first + 1) * sector,
      type: _guid(typeGuid),
    });
  }
  return _checked("gpt", partitions);
}

function _checked(kind: "mbr" | "gpt", partitions: Partition[]): PartitionTable {
  partitions.sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < partitions.length; i++) {
    const prev = partitions[i - 1];
    if (prev.offset + prev.sizeBytes > partitions[i].offset) {
      return {
        kind: "invalid",
        reason: `partitions at bytes ${prev.offset} and ${partitions[i].offset} overlap`,
      };
    }
  }
  return { kind, partitions };
}

/** A little-endian u64 as a number; values past 2^53 become Infinity, which fails every bound. */
function _u64(v: DataView, at: number): number {
  const n = v.getBigUint64(at, true);
  return n > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(n);
}

function _hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}

/** A GPT GUID in its usual text form (first three fields little-endian). */
function _guid(b: Uint8Array): string {
  const h = (i: number) => b[i].toString(16).padStart(2, "0");
  const le = (idx: number[]) => idx.map(h).join("");
  return `${le([3, 2, 1, 0])}-${le([5, 4])}-${le([7, 6])}-${le([8, 9])}-${
    le([10, 11, 12, 13, 14, 15])
  }`;
}
