/**
 * Finds the bytes of a disk image that no filesystem uses, so that publish can store
 * them as zeroes: blocks an ext2/3/4 filesystem's block bitmaps mark free still hold
 * whatever was last written there (deleted files, apt's downloaded packages), and that
 * stale data would otherwise be chunked, compressed, stored and sent with every update.
 *
 * Safety comes first: a byte is reported unused only when an ext filesystem that
 * checks out in every field we read says so. Disks, tables or filesystems we do not
 * recognise yield no ranges at all; so do filesystems that were not cleanly unmounted
 * (their journal may hold allocations the bitmaps do not show yet). The space outside
 * filesystems (gaps between partitions, where boot loaders hide) is never reported.
 *
 * The on-disk layout is the kernel's (Documentation/filesystems/ext4/), read with
 * `DataView` at explicit offsets; checksums (metadata_csum, gdt_csum) are verified.
 *
 * @module
 */

import { type ByteRange, fileReadAt, mergeRanges, type ReadAt } from "./byte_ranges.ts";
import { type Partition, readPartitionTable } from "./partition_table.ts";
import { crc16, crc32cRaw } from "./_checksums.ts";

export { type ByteRange, fileReadAt, type ReadAt } from "./byte_ranges.ts";

/** What the scan concluded about one filesystem candidate (the whole disk or a partition). */
export interface VolumeReport {
  offset: number;
  sizeBytes: number;
  /** "ext4" when its free blocks were read; "skipped" otherwise. */
  kind: "ext4" | "skipped";
  /** Why it was skipped, or a one-line description of the filesystem. */
  detail: string;
  /** Unused byte ranges on the disk (empty when skipped). */
  unused: ByteRange[];
}

/** The result of `scanUnused`: the merged ranges and how each volume was treated. */
export interface UnusedScan {
  unused: ByteRange[];
  volumes: VolumeReport[];
  /** Set when the partition table itself was not usable. */
  tableProblem?: string;
}

/**
 * The disk byte ranges (sorted, merged) that the disk's ext2/3/4 filesystems do not
 * use. Anything not recognised contributes no ranges.
 */
export async function findUnusedRanges(read: ReadAt, sizeBytes: number): Promise<ByteRange[]> {
  return (await scanUnused(read, sizeBytes)).unused;
}

/** `findUnusedRanges` on an image file. */
export async function findUnusedRangesInFile(path: string): Promise<ByteRange[]> {
  using file = await Deno.open(path, { read: true });
  const { size } = await file.stat();
  return await findUnusedRanges(fileReadAt(file), size);
}

/** Like `findUnusedRanges`, and also says how each volume was treated. */
export async function scanUnused(read: ReadAt, sizeBytes: number): Promise<UnusedScan> {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
    throw new RangeError(`disk size ${sizeBytes} is not a byte count`);
  }
  const table = await readPartitionTable(read, sizeBytes);
  if (table.kind === "invalid") return { unused: [], volumes: [], tableProblem: table.reason };
  const bare = await _scanExt(read, 0, sizeBytes);
  let volumes: Partition[];
  if (table.kind === "none") {
    volumes = [{ offset: 0, sizeBytes, type: "disk" }];
  } else if (bare.ok) {
    // A filesystem at byte 0 and a partition table at once: one of them is stale, and
    // either could hold data in the other's free space.
    return {
      unused: [],
      volumes: [],
      tableProblem: `both a ${table.kind} table and a filesystem at byte 0`,
    };
  } else {
    volumes = table.partitions;
  }
  const reports: VolumeReport[] = [];
  for (const p of volumes) {
    const r = p.offset === 0 && p.sizeBytes === sizeBytes
      ? bare
      : await _scanExt(read, p.offset, p.sizeBytes);
    reports.push(
      r.ok
        ? {
          offset: p.offset,
          sizeBytes: p.sizeBytes,
          kind: "ext4",
          detail: r.detail,
          unused: r.unused,
        }
        : {
          offset: p.offset,
          sizeBytes: p.sizeBytes,
          kind: "skipped",
          detail: r.reason,
          unused: [],
        },
    );
  }
  const unused = mergeRanges(reports.flatMap((r) => r.unused));
  return { unused, volumes: reports };
}

// Feature flags (Documentation/filesystems/ext4/super.rst).
const INCOMPAT_COMPRESSION = 0x1;
const INCOMPAT_RECOVER = 0x4;
const INCOMPAT_JOURNAL_DEV = 0x8;
const INCOMPAT_META_BG = 0x10;
const INCOMPAT_64BIT = 0x80;
const INCOMPAT_CSUM_SEED = 0x2000;
/** filetype, extents, 64bit, mmp, flex_bg, ea_inode, dirdata, csum_seed, largedir,
 * inline_data, encrypt, casefold, and meta_bg (handled below). */
const INCOMPAT_KNOWN = 0x2 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x1000 | 0x2000 |
  0x4000 | 0x8000 | 0x10000 | 0x20000;
const RO_COMPAT_SPARSE_SUPER = 0x1;
const RO_COMPAT_GDT_CSUM = 0x10;
const RO_COMPAT_METADATA_CSUM = 0x400;
/** sparse_super, large_file, btree_dir, huge_file, gdt_csum, dir_nlink, extra_isize,
 * quota, metadata_csum, readonly, project, shared_blocks, verity, orphan_present.
 * Left out on purpose: has_snapshot, bigalloc (bitmaps count clusters), replica. */
const RO_COMPAT_KNOWN = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x100 | 0x400 | 0x1000 |
  0x2000 | 0x4000 | 0x8000 | 0x10000;
const COMPAT_SPARSE_SUPER2 = 0x200;
const STATE_VALID = 0x1;
const STATE_ERROR = 0x2;
const BG_BLOCK_UNINIT = 0x2;
const BG_BLOCK_BITMAP_CSUM_HI_END = 0x3c;
/** Groups past this would mean reading more descriptors than any real disk has. */
const MAX_GROUPS = 1 << 22;

type _ExtResult =
  | { ok: true; detail: string; unused: ByteRange[] }
  | { ok: false; reason: string };

interface _Group {
  firstBlock: number;
  blocks: number;
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  freeBlocks: number;
  flags: number;
  bitmapCsum: number;
}

/**
 * Reads the ext2/3/4 filesystem at disk byte `fsOffset` (a volume of `volumeBytes`) and
 * returns its free blocks as disk byte ranges, or why it will not.
 */
async function _scanExt(read: ReadAt, fsOffset: number, volumeBytes: number): Promise<_ExtResult> {
  const fail = (reason: string): _ExtResult => ({ ok: false, reason });
  if (volumeBytes < 2048) return fail("too small for an ext filesystem");
  const sb = await read(fsOffset + 1024, 1024);
  if (sb.length < 1024) return fail("volume ends before the superblock");
  const s = new DataView(sb.buffer, sb.byteOffset, 1024);
  if (s.getUint16(0x38, true) !== 0xef53) return fail("no ext superblock");

  const compat = s.getUint32(0x5c, true);
  const incompat = s.getUint32(0x60, true);
  const roCompat = s.getUint32(0x64, true);
  const revLevel = s.getUint32(0x4c, true);
  if (revLevel > 1) return fail(`unknown ext revision ${revLevel}`);
  if (revLevel === 0 && (compat | incompat | roCompat) !== 0) {
    return fail("revision 0 superblock with feature flags");
  }
  if (incompat & (INCOMPAT_RECOVER | INCOMPAT_JOURNAL_DEV | INCOMPAT_COMPRESSION)) {
    return fail(
      incompat & INCOMPAT_RECOVER
        ? "journal needs recovery (not cleanly unmounted)"
        : "journal device or compressed filesystem",
    );
  }
  if (incompat & ~INCOMPAT_KNOWN) {
    return fail(`unknown incompatible features 0x${(incompat & ~INCOMPAT_KNOWN).toString(16)}`);
  }
  if (roCompat & ~RO_COMPAT_KNOWN) {
    return fail(`unsupported ro_compat features 0x${(roCompat & ~RO_COMPAT_KNOWN).toString(16)}`);
  }
  const state = s.getUint16(0x3a, true);
  if (!(state & STATE_VALID) || state & STATE_ERROR) {
    return fail(`filesystem state 0x${state.toString(16)} is not clean`);
  }

  const metadataCsum = (roCompat & RO_COMPAT_METADATA_CSUM) !== 0;
  const gdtCsum = !metadataCsum && (roCompat & RO_COMPAT_GDT_CSUM) !== 0;
  let csumSeed = 0;
  if (metadataCsum) {
    if (sb[0x175] !== 1) return fail(`unknown checksum type ${sb[0x175]}`);
    if (crc32cRaw(0xffffffff, sb.subarray(0, 0x3fc)) !== s.getUint32(0x3fc, true)) {
      return fail("superblock checksum does not match");
    }
    csumSeed = incompat & INCOMPAT_CSUM_SEED
      ? s.getUint32(0x270, true)
      : crc32cRaw(0xffffffff, sb.subarray(0x68, 0x78));
  }

  const logBlock = s.getUint32(0x18, true);
  if (logBlock > 6) return fail(`block size 2^${10 + logBlock} is out of range`);
  const bs = 1024 << logBlock;
  if (s.getUint32(0x1c, true) !== logBlock) return fail("cluster size differs from block size");
  const is64 = (incompat & INCOMPAT_64BIT) !== 0;
  const blocksCount = s.getUint32(0x4, true) + (is64 ? s.getUint32(0x150, true) * 2 ** 32 : 0);
  const firstDataBlock = s.getUint32(0x14, true);
  const bpg = s.getUint32(0x20, true);
  const ipg = s.getUint32(0x28, true);
  const inodesCount = s.getUint32(0x0, true);
  const inodeSize = revLevel === 0 ? 128 : s.getUint16(0x58, true);
  const descSize = is64 ? s.getUint16(0xfe, true) : 32;
  const reservedGdt = s.getUint16(0xce, true);
  const firstMetaBg = s.getUint32(0x104, true);

  if (firstDataBlock !== (bs === 1024 ? 1 : 0)) {
    return fail(`first data block ${firstDataBlock} does not fit block size ${bs}`);
  }
  if (bpg === 0 || bpg > bs * 8 || bpg % 8 !== 0 || s.getUint32(0x24, true) !== bpg) {
    return fail(`blocks per group ${bpg} is out of range`);
  }
  if (blocksCount <= firstDataBlock || blocksCount * bs > volumeBytes) {
    return fail(`${blocksCount} blocks of ${bs} bytes do not fit the ${volumeBytes}-byte volume`);
  }
  const groups = Math.ceil((blocksCount - firstDataBlock) / bpg);
  if (groups > MAX_GROUPS) return fail(`${groups} block groups is out of range`);
  if (ipg === 0 || ipg > bs * 8 || inodesCount !== ipg * groups) {
    return fail(`inode counts (${inodesCount}, ${ipg} per group) do not match ${groups} groups`);
  }
  if (inodeSize < 128 || inodeSize > bs || (inodeSize & (inodeSize - 1)) !== 0) {
    return fail(`inode size ${inodeSize} is out of range`);
  }
  if (
    descSize < 32 || descSize > 1024 || (descSize & (descSize - 1)) !== 0 ||
    (is64 && descSize < 64)
  ) {
    return fail(`group descriptor size ${descSize} is out of range`);
  }
  const descPerBlock = bs / descSize;
  const gdtBlocks = Math.ceil(groups / descPerBlock);
  const metaBg = (incompat & INCOMPAT_META_BG) !== 0;
  if (metaBg && firstMetaBg > gdtBlocks) {
    return fail(`first_meta_bg ${firstMetaBg} is out of range`);
  }
  if (reservedGdt > bs / 4) return fail(`${reservedGdt} reserved GDT blocks is out of range`);
  const itableBlocks = Math.ceil((ipg * inodeSize) / bs);

  const backupGroups = compat & COMPAT_SPARSE_SUPER2
    ? [s.getUint32(0x24c, true), s.getUint32(0x250, true)]
    : null;
  const hasSuper = (g: number): boolean => {
    if (g === 0) return true;
    if (backupGroups) return g === backupGroups[0] || g === backupGroups[1];
    if (!(roCompat & RO_COMPAT_SPARSE_SUPER)) return true;
    if (g === 1) return true;
    for (const base of [3, 5, 7]) {
      let p = base;
      while (p < g) p *= base;
      if (p === g) return true;
    }
    return false;
  };
  const groupFirst = (g: number) => firstDataBlock + g * bpg;
  // ext4's descriptor_loc(): where descriptor block `n` of the table lives.
  const descriptorBlock = (n: number): number => {
    if (!metaBg || n < firstMetaBg) return firstDataBlock + 1 + n;
    const g = n * descPerBlock;
    return groupFirst(g) + (hasSuper(g) ? 1 : 0);
  };
  // ext4_num_base_meta_clusters(): superblock backup and descriptor blocks at a group's start.
  const baseMeta = (g: number): number => {
    const sup = hasSuper(g) ? 1 : 0;
    const metagroup = Math.floor(g / descPerBlock);
    if (!metaBg || metagroup < firstMetaBg) {
      return sup ? 1 + (metaBg ? firstMetaBg : gdtBlocks) + reservedGdt : 0;
    }
    const first = metagroup * descPerBlock;
    const gdb = g === first || g === first + 1 || g === first + descPerBlock - 1 ? 1 : 0;
    return sup + gdb;
  };

  // Group descriptors.
  const descBlocks = new Map<number, Uint8Array>();
  const readBlock = async (block: number): Promise<Uint8Array | null> => {
    if (block < firstDataBlock || block >= blocksCount) return null;
    const b = await read(fsOffset + block * bs, bs);
    return b.length === bs ? b : null;
  };
  const groupList: _Group[] = [];
  for (let g = 0; g < groups; g++) {
    const n = Math.floor(g / descPerBlock);
    let block = descBlocks.get(n);
    if (!block) {
      const b = await readBlock(descriptorBlock(n));
      if (!b) return fail(`group descriptor block ${n} lies outside the filesystem`);
      descBlocks.set(n, b);
      block = b;
    }
    const at = (g % descPerBlock) * descSize;
    const desc = block.subarray(at, at + descSize);
    const d = new DataView(desc.buffer, desc.byteOffset, descSize);
    if (metadataCsum || gdtCsum) {
      const le = new Uint8Array(4);
      new DataView(le.buffer).setUint32(0, g, true);
      const zeroed = desc.slice();
      zeroed[0x1e] = 0;
      zeroed[0x1f] = 0;
      const sum = metadataCsum
        ? crc32cRaw(crc32cRaw(csumSeed, le), zeroed) & 0xffff
        : crc16(crc16(crc16(0xffff, sb.subarray(0x68, 0x78)), le), _withoutChecksum(desc, is64));
      if (sum !== d.getUint16(0x1e, true)) {
        return fail(`group descriptor ${g} checksum does not match`);
      }
    }
    const hi = (off: number) => (is64 ? d.getUint32(off, true) * 2 ** 32 : 0);
    const firstBlock = groupFirst(g);
    groupList.push({
      firstBlock,
      blocks: Math.min(bpg, blocksCount - firstBlock),
      blockBitmap: d.getUint32(0x0, true) + hi(0x20),
      inodeBitmap: d.getUint32(0x4, true) + hi(0x24),
      inodeTable: d.getUint32(0x8, true) + hi(0x28),
      freeBlocks: d.getUint16(0xc, true) + (is64 ? d.getUint16(0x2c, true) * 0x10000 : 0),
      flags: d.getUint16(0x12, true),
      bitmapCsum: d.getUint16(0x18, true) +
        (descSize >= BG_BLOCK_BITMAP_CSUM_HI_END ? d.getUint16(0x38, true) * 0x10000 : 0),
    });
  }

  // Every metadata block the descriptors name, which every bitmap must show as used.
  const metadata: Array<[number, number]> = [];
  for (let g = 0; g < groups; g++) {
    const gr = groupList[g];
    for (
      const [start, len] of [[gr.blockBitmap, 1], [gr.inodeBitmap, 1], [
        gr.inodeTable,
        itableBlocks,
      ]]
    ) {
      if (start < firstDataBlock || start + len > blocksCount) {
        return fail(`group ${g}'s bitmaps or inode table lie outside the filesystem`);
      }
      metadata.push([start, len]);
    }
    const base = baseMeta(g);
    if (base > gr.blocks) return fail(`group ${g} is smaller than its own metadata`);
    if (base > 0) metadata.push([gr.firstBlock, base]);
  }

  const unused: ByteRange[] = [];
  let freeTotal = 0;
  const honourUninit = metadataCsum || gdtCsum;
  for (let g = 0; g < groups; g++) {
    const gr = groupList[g];
    const uninit = honourUninit && (gr.flags & BG_BLOCK_UNINIT) !== 0;
    let bitmap: Uint8Array;
    if (uninit) {
      // Never written: the kernel computes it from the layout (ext4_init_block_bitmap);
      // we mark the same blocks and, with flex_bg, any other group's tables living here.
      bitmap = new Uint8Array(bs);
    } else {
      const b = await readBlock(gr.blockBitmap);
      if (!b) return fail(`group ${g}'s block bitmap cannot be read`);
      if (metadataCsum) {
        const size = bpg / 8;
        let sum = crc32cRaw(csumSeed, b.subarray(0, size));
        if (descSize < BG_BLOCK_BITMAP_CSUM_HI_END) sum &= 0xffff;
        if (sum !== gr.bitmapCsum) return fail(`group ${g}'s block bitmap checksum does not match`);
      }
      bitmap = b;
    }
    // Metadata that lies in this group must be marked used: set it in a synthesized
    // bitmap, and check it in a read one (a bitmap that frees metadata is not ours to trust).
    for (const [start, len] of metadata) {
      const from = Math.max(start, gr.firstBlock);
      const to = Math.min(start + len, gr.firstBlock + gr.blocks);
      for (let blk = from; blk < to; blk++) {
        const bit = blk - gr.firstBlock;
        if (uninit) bitmap[bit >> 3] |= 1 << (bit & 7);
        else if (!(bitmap[bit >> 3] & (1 << (bit & 7)))) {
          return fail(`group ${g}'s bitmap marks metadata block ${blk} free`);
        }
      }
    }
    const free = _freeRuns(bitmap, gr.blocks, (bit, count) => {
      unused.push({ offset: fsOffset + (gr.firstBlock + bit) * bs, length: count * bs });
    });
    // The descriptor's count is kept in step with the bitmap by the kernel; a bitmap with
    // more free blocks than its count says is stale or misread. (A synthesized bitmap may
    // have fewer: it also protects other groups' tables.)
    if (uninit ? free > gr.freeBlocks : free !== gr.freeBlocks) {
      return fail(`group ${g}'s bitmap has ${free} free blocks, its descriptor ${gr.freeBlocks}`);
    }
    freeTotal += free;
  }
  const detail =
    `ext${is64 || incompat & 0x40 ? 4 : compat & 0x4 ? 3 : 2}, ${blocksCount} blocks ` +
    `of ${bs} bytes, ${groups} groups, ${freeTotal} blocks free`;
  return { ok: true, detail, unused: mergeRanges(unused) };
}

/** The descriptor bytes gdt_csum covers: all but the checksum field (and, without 64bit,
 * nothing past the 32-byte descriptor). */
function _withoutChecksum(desc: Uint8Array, is64: boolean): Uint8Array {
  const end = is64 ? desc.length : 32;
  const out = new Uint8Array(end - 2);
  out.set(desc.subarray(0, 0x1e), 0);
  out.set(desc.subarray(0x20, end), 0x1e);
  return out;
}

/** Calls `onRun(firstBit, count)` for each run of clear bits below `bits`; returns their total. */
function _freeRuns(
  bitmap: Uint8Array,
  bits: number,
  onRun: (first: number, count: number) => void,
): number {
  let total = 0;
  let runStart = -1;
  let bit = 0;
  while (bit < bits) {
    const byte = bitmap[bit >> 3];
    if ((bit & 7) === 0 && bit + 8 <= bits && (byte === 0x00 || byte === 0xff)) {
      if (byte === 0x00) {
        if (runStart < 0) runStart = bit;
      } else if (runStart >= 0) {
        onRun(runStart, bit - runStart);
        total += bit - runStart;
        runStart = -1;
      }
      bit += 8;
      continue;
    }
    const used = (byte >> (bit & 7)) & 1;
    if (!used && runStart < 0) runStart = bit;
    else if (used && runStart >= 0) {
      onRun(runStart, bit - runStart);
      total += bit - runStart;
      runStart = -1;
    }
    bit++;
  }
  if (runStart >= 0) {
    onRun(runStart, bits - runStart);
    total += bits - runStart;
  }
  return total;
}
