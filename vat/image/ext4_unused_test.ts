/**
 * Tests of `findUnusedRanges` on real filesystems made by e2fsprogs (mke2fs -d, debugfs),
 * bare and inside MBR (sfdisk) and GPT (sgdisk) tables. Needs e2fsprogs, fdisk, gdisk.
 */

import assert from "node:assert/strict";
import { type ByteRange, findUnusedRanges, scanUnused } from "./ext4_unused.ts";
import { fileReadAt, zeroRanges } from "./byte_ranges.ts";

const MiB = 1024 * 1024;

async function _run(cmd: string, args: string[], stdin?: string): Promise<string> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

/** Eight bytes that name file `n` and start each of its blocks. */
function _marker(n: number): Uint8Array {
  return new TextEncoder().encode(`F${n.toString().padStart(6, "0")}#`);
}

/** A file of `size` bytes: `_marker(n)` repeated, with a counter so blocks differ. */
function _fileBytes(n: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  const m = _marker(n);
  for (let i = 0; i < size; i += 8) out.set(m.subarray(0, Math.min(8, size - i)), i);
  return out;
}

interface _Tree {
  dir: string;
  files: Map<string, Uint8Array>;
}

/** A directory of files (sizes from 1 byte to 3 MiB, some in subdirectories). */
async function _makeTree(root: string, count: number): Promise<_Tree> {
  const dir = `${root}/tree`;
  await Deno.mkdir(`${dir}/sub/deeper`, { recursive: true });
  const files = new Map<string, Uint8Array>();
  const sizes = [1, 700, 4096, 5000, 65536, 300_000, 1_048_576, 3 * MiB];
  for (let n = 1; n <= count; n++) {
    const where = n % 3 === 0 ? "sub/deeper/" : n % 3 === 1 ? "sub/" : "";
    const name = `${where}file${n}`;
    const data = _fileBytes(n, sizes[n % sizes.length]);
    await Deno.writeFile(`${dir}/${name}`, data);
    files.set(name, data);
  }
  return { dir, files };
}

/** Makes a `sizeBytes` ext filesystem image of `tree` with mke2fs `options`. */
async function _mkfs(path: string, sizeBytes: number, tree: _Tree, options: string[]) {
  const f = await Deno.open(path, { create: true, write: true, truncate: true });
  await f.truncate(sizeBytes);
  f.close();
  await _run("mke2fs", ["-q", "-F", ...options, "-d", tree.dir, path]);
}

function _inRanges(ranges: ByteRange[], offset: number, length: number): "all" | "none" | "some" {
  let covered = 0;
  for (const r of ranges) {
    const from = Math.max(r.offset, offset);
    const to = Math.min(r.offset + r.length, offset + length);
    if (to > from) covered += to - from;
  }
  return covered === 0 ? "none" : covered === length ? "all" : "some";
}

function _assertWellFormed(ranges: ByteRange[], blockBytes: number, limit: number) {
  for (let i = 0; i < ranges.length; i++) {
    const r = ranges[i];
    assert(r.length > 0 && r.offset % blockBytes === 0 && r.length % blockBytes === 0);
    assert(r.offset + r.length <= limit);
    if (i > 0) assert(ranges[i - 1].offset + ranges[i - 1].length < r.offset);
  }
}

/** Disk blocks (file system relative) of `path` in the image, as debugfs lists them. */
async function _fileBlocks(image: string, path: string): Promise<number[]> {
  const out = await _run("debugfs", ["-R", `blocks /${path}`, image]);
  return out.trim().split(/\s+/).filter((s) => s !== "").map(Number);
}

/**
 * The core check: in a copy of the disk with every "unused" byte zeroed, the filesystem
 * still checks clean and every file reads back identical; and no block of the original
 * that starts with a live file's marker lies in an unused range.
 */
async function _assertZeroingIsSafe(
  disk: string,
  fsOffset: number,
  fsBytes: number,
  tree: _Tree,
  live: Set<string>,
  ranges: ByteRange[],
  blockBytes: number,
) {
  const image = await Deno.readFile(disk);
  const markers = new Set(
    [...live].map((name) => new TextDecoder().decode(_marker(Number(name.replace(/.*file/, ""))))),
  );
  for (let off = fsOffset; off < fsOffset + fsBytes; off += blockBytes) {
    const head = new TextDecoder().decode(image.subarray(off, off + 8));
    if (markers.has(head)) {
      assert.deepStrictEqual(
        _inRanges(ranges, off, blockBytes),
        "none",
        `live data at ${off} is "unused"`,
      );
    }
  }
  zeroRanges(image, 0, ranges);
  const dir = await Deno.makeTempDir();
  try {
    const fsImage = `${dir}/fs.img`;
    await Deno.writeFile(fsImage, image.subarray(fsOffset, fsOffset + fsBytes));
    await _run("e2fsck", ["-fn", fsImage]);
    await _run("debugfs", ["-R", `rdump / ${dir}`, fsImage]);
    for (const name of live) {
      assert.deepStrictEqual(await Deno.readFile(`${dir}/${name}`), tree.files.get(name), name);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Builds a filesystem with `options`, deletes a third of its files with debugfs, and
 * checks the ranges the scan returns for it at `fsOffset` within `disk`.
 */
async function _checkFilesystem(
  options: string[],
  place: (fsImage: string, fsBytes: number) => Promise<{ disk: string; fsOffset: number }>,
) {
  const root = await Deno.makeTempDir({ prefix: "vat-ext4-unused-" });
  try {
    const tree = await _makeTree(root, 24);
    const fsImage = `${root}/fs.img`;
    const fsBytes = 48 * MiB;
    await _mkfs(fsImage, fsBytes, tree, options);
    const blockBytes = Number(
      (await _run("dumpe2fs", ["-h", fsImage])).match(/Block size:\s+(\d+)/)![1],
    );
    const deleted = [...tree.files.keys()].filter((_, i) => i % 3 === 1);
    const deletedBlocks: number[] = [];
    for (const name of deleted) {
      deletedBlocks.push(...await _fileBlocks(fsImage, name));
      await _run("debugfs", ["-w", "-R", `rm /${name}`, fsImage]);
    }
    await _run("e2fsck", ["-fn", fsImage]);
    const live = new Set([...tree.files.keys()].filter((n) => !deleted.includes(n)));
    const { disk, fsOffset } = await place(fsImage, fsBytes);

    using file = await Deno.open(disk);
    const size = (await file.stat()).size;
    const scan = await scanUnused(fileReadAt(file), size);
    assert.deepStrictEqual(
      scan.volumes.filter((v) => v.kind === "ext4").length,
      1,
      JSON.stringify(scan),
    );
    const ranges = scan.unused;
    _assertWellFormed(ranges, blockBytes, size);
    for (const r of ranges) {
      assert(r.offset >= fsOffset && r.offset + r.length <= fsOffset + fsBytes);
    }

    assert(deletedBlocks.length > 100);
    for (const b of deletedBlocks) {
      assert.deepStrictEqual(
        _inRanges(ranges, fsOffset + b * blockBytes, blockBytes),
        "all",
        `block ${b}`,
      );
    }
    const freeBlocks = Number(
      (await _run("dumpe2fs", ["-h", fsImage])).match(/Free blocks:\s+(\d+)/)![1],
    );
    assert.deepStrictEqual(ranges.reduce((a, r) => a + r.length, 0), freeBlocks * blockBytes);
    await _assertZeroingIsSafe(disk, fsOffset, fsBytes, tree, live, ranges, blockBytes);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

const bare = (fsImage: string) => Promise.resolve({ disk: fsImage, fsOffset: 0 });

for (
  const [label, options] of [
    ["ext4 with default features (metadata_csum, 64bit, flex_bg)", ["-t", "ext4", "-b", "4096"]],
    ["ext4 with many groups, some BLOCK_UNINIT", ["-t", "ext4", "-b", "4096", "-g", "1024"]],
    ["ext4 with 1 KiB blocks", ["-t", "ext4", "-b", "1024"]],
    ["ext4 with gdt_csum instead of metadata_csum", [
      "-t",
      "ext4",
      "-b",
      "4096",
      "-g",
      "2048",
      "-O",
      "^metadata_csum,uninit_bg",
    ]],
    ["ext4 without 64bit and flex_bg", [
      "-t",
      "ext4",
      "-b",
      "4096",
      "-g",
      "2048",
      "-O",
      "^64bit,^flex_bg",
    ]],
    ["ext4 with meta_bg over several metagroups", [
      "-t",
      "ext4",
      "-b",
      "1024",
      "-g",
      "256",
      "-O",
      "meta_bg,^resize_inode",
    ]],
    ["ext4 with sparse_super2", ["-t", "ext4", "-b", "1024", "-O", "sparse_super2"]],
    ["ext4 with 64-byte descriptors but no metadata_csum", [
      "-t",
      "ext4",
      "-b",
      "4096",
      "-O",
      "^metadata_csum",
    ]],
    ["ext3", ["-t", "ext3", "-b", "4096", "-g", "4096"]],
    ["ext2 without sparse_super", ["-t", "ext2", "-O", "^sparse_super,^resize_inode"]],
  ] as Array<[string, string[]]>
) {
  Deno.test(`findUnusedRanges() finds exactly the free blocks of a bare ${label}`, async () => {
    await _checkFilesystem(options, bare);
  });
}

/** Copies `fsImage` into a new disk at `fsOffset`, in a `diskBytes` file. */
async function _embed(fsImage: string, diskBytes: number, fsOffset: number, disk: string) {
  const f = await Deno.open(disk, { create: true, write: true, truncate: true });
  try {
    await f.truncate(diskBytes);
    await f.seek(fsOffset, Deno.SeekMode.Start);
    const data = await Deno.readFile(fsImage);
    let written = 0;
    while (written < data.length) written += await f.write(data.subarray(written));
  } finally {
    f.close();
  }
}

Deno.test("findUnusedRanges() reads an ext4 filesystem in an MBR logical partition", async () => {
  await _checkFilesystem(["-t", "ext4"], async (fsImage, fsBytes) => {
    const disk = `${fsImage}.mbr`;
    // p1: 8 MiB of non-fs data; an extended partition holding one logical partition.
    const fsOffset = 20 * MiB;
    await _embed(fsImage, 80 * MiB, fsOffset, disk);
    await _run(
      "sfdisk",
      ["-q", "--no-reread", "--no-tell-kernel", disk],
      [
        "label: dos",
        `start=${MiB / 512}, size=${8 * MiB / 512}, type=83`,
        `start=${16 * MiB / 512}, size=${60 * MiB / 512}, type=5`,
        `start=${fsOffset / 512}, size=${fsBytes / 512}, type=83`,
        "",
      ].join("\n"),
    );
    return { disk, fsOffset };
  });
});

Deno.test("findUnusedRanges() reads an ext4 filesystem in a GPT partition", async () => {
  await _checkFilesystem(["-t", "ext4"], async (fsImage, fsBytes) => {
    const disk = `${fsImage}.gpt`;
    const fsOffset = 10 * MiB;
    await _embed(fsImage, 64 * MiB, fsOffset, disk);
    await _run("sgdisk", [
      "-n",
      `1:2048:${10 * MiB / 512 - 1}`,
      "-t",
      "1:ef02",
      "-n",
      `2:${fsOffset / 512}:${(fsOffset + fsBytes) / 512 - 1}`,
      "-t",
      "2:8300",
      disk,
    ]);
    return { disk, fsOffset };
  });
});

// --- Everything it must refuse -------------------------------------------------------

/** A small populated ext4 image; `edit` changes it; returns what the scan says. */
async function _scanAfter(
  edit: (image: string, dir: string) => Promise<string | void>,
): Promise<Awaited<ReturnType<typeof scanUnused>>> {
  const root = await Deno.makeTempDir({ prefix: "vat-ext4-unused-" });
  try {
    const tree = await _makeTree(root, 6);
    const image = `${root}/fs.img`;
    await _mkfs(image, 16 * MiB, tree, ["-t", "ext4"]);
    const disk = (await edit(image, root)) ?? image;
    using file = await Deno.open(disk);
    return await scanUnused(fileReadAt(file), (await file.stat()).size);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function _poke(path: string, offset: number, bytes: number[]) {
  using f = await Deno.open(path, { write: true });
  await f.seek(offset, Deno.SeekMode.Start);
  await f.write(new Uint8Array(bytes));
}

Deno.test("findUnusedRanges() sees the unmodified control image", async () => {
  const scan = await _scanAfter(async () => {});
  assert(scan.unused.length > 0);
});

Deno.test("findUnusedRanges() refuses a filesystem whose journal needs recovery", async () => {
  const scan = await _scanAfter(async (image) => {
    await _run("debugfs", ["-w", "-R", "feature needs_recovery", image]);
  });
  assert.deepStrictEqual(scan.unused, []);
  assert.deepStrictEqual(scan.volumes[0].detail, "journal needs recovery (not cleanly unmounted)");
});

Deno.test("findUnusedRanges() refuses a filesystem not marked clean", async () => {
  const scan = await _scanAfter(async (image) => {
    await _run("debugfs", ["-w", "-R", "ssv state 0", image]);
  });
  assert.deepStrictEqual(scan.unused, []);
  assert.deepStrictEqual(scan.volumes[0].detail, "filesystem state 0x0 is not clean");
});

Deno.test("findUnusedRanges() refuses a superblock whose checksum fails", async () => {
  const scan = await _scanAfter(async (image) => {
    await _poke(image, 1024 + 0x10, [0x01]); // s_free_inodes_count, without fixing the csum
  });
  assert.deepStrictEqual(scan.unused, []);
  assert.deepStrictEqual(scan.volumes[0].detail, "superblock checksum does not match");
});

Deno.test("findUnusedRanges() refuses a block bitmap whose checksum fails", async () => {
  const scan = await _scanAfter(async (image) => {
    const out = await _run("dumpe2fs", [image]);
    const bitmap = Number(out.match(/Block bitmap at (\d+)/)![1]);
    const blockBytes = Number(out.match(/Block size:\s+(\d+)/)![1]);
    // Mark one more block used in the bitmap's last byte, leaving its checksum stale.
    using f = await Deno.open(image, { read: true, write: true });
    const at = bitmap * blockBytes + blockBytes / 8 - 1;
    const byte = new Uint8Array(1);
    await f.seek(at, Deno.SeekMode.Start);
    await f.read(byte);
    await _poke(image, at, [byte[0] ^ 0x01]);
  });
  assert.deepStrictEqual(scan.unused, []);
  assert.deepStrictEqual(scan.volumes[0].detail, "group 0's block bitmap checksum does not match");
});

Deno.test("findUnusedRanges() refuses a bitmap that frees metadata, checksums fixed up", async () => {
  const scan = await _scanAfter(async (image) => {
    // Free the block holding group 0's block bitmap itself, as a corrupt fs might;
    // debugfs recomputes every checksum so only the content is wrong.
    const out = await _run("dumpe2fs", [image]);
    const bitmap = Number(out.match(/Block bitmap at (\d+)/)![1]);
    await _run("debugfs", ["-w", "-R", `freeb ${bitmap}`, image]);
  });
  assert.deepStrictEqual(scan.unused, []);
  assert(scan.volumes[0].detail.includes("marks metadata block"), scan.volumes[0].detail);
});

Deno.test("findUnusedRanges() refuses unknown incompatible features", async () => {
  const scan = await _scanAfter(async (image) => {
    await _run("debugfs", ["-w", "-R", "ssv feature_incompat 0x800002c2", image]);
  });
  assert.deepStrictEqual(scan.unused, []);
  assert(scan.volumes[0].detail.startsWith("unknown incompatible features"));
});

Deno.test("findUnusedRanges() refuses bigalloc, whose bitmaps count clusters", async () => {
  const scan = await _scanAfter(async (image, dir) => {
    await _mkfs(image, 16 * MiB, { dir: `${dir}/tree`, files: new Map() }, [
      "-t",
      "ext4",
      "-b",
      "4096",
      "-O",
      "bigalloc",
    ]);
  });
  assert.deepStrictEqual(scan.unused, []);
  assert.deepStrictEqual(scan.volumes[0].detail, "unsupported ro_compat features 0x200");
});

Deno.test("findUnusedRanges() refuses a filesystem larger than its volume", async () => {
  const scan = await _scanAfter(async (image) => {
    await Deno.truncate(image, 15 * MiB);
  });
  assert.deepStrictEqual(scan.unused, []);
});

Deno.test("findUnusedRanges() returns nothing for data that is no filesystem", async () => {
  const data = new Uint8Array(4 * MiB);
  for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
  const read = (off: number, len: number) => Promise.resolve(data.subarray(off, off + len));
  assert.deepStrictEqual(await findUnusedRanges(read, data.length), []);
  assert.deepStrictEqual(await findUnusedRanges(read, 100), []);
  assert.deepStrictEqual(await findUnusedRanges(read, 0), []);
});

Deno.test("findUnusedRanges() refuses a GPT whose partition array checksum fails", async () => {
  const scan = await _scanAfter(async (image, dir) => {
    const disk = `${dir}/disk.gpt`;
    await _embed(image, 32 * MiB, MiB, disk);
    await _run("sgdisk", ["-n", `1:2048:${(MiB + 16 * MiB) / 512 - 1}`, disk]);
    await _poke(disk, 1024 + 32, [0x09]); // entry 1's first LBA, under the array CRC
    return disk;
  });
  assert.deepStrictEqual(scan.unused, []);
  assert.deepStrictEqual(scan.tableProblem, "GPT partition array checksum does not match");
});

Deno.test("findUnusedRanges() refuses overlapping MBR partitions", async () => {
  const scan = await _scanAfter(async (image, dir) => {
    const disk = `${dir}/disk.mbr`;
    await _embed(image, 32 * MiB, MiB, disk);
    // Written by hand: sfdisk will not make overlapping partitions.
    const mbr = new Uint8Array(512);
    const v = new DataView(mbr.buffer);
    for (const [i, start, count] of [[0, 2048, 32768], [1, 4096, 8192]]) {
      mbr[446 + 16 * i + 4] = 0x83;
      v.setUint32(446 + 16 * i + 8, start, true);
      v.setUint32(446 + 16 * i + 12, count, true);
    }
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    await _poke(disk, 0, [...mbr]);
    return disk;
  });
  assert.deepStrictEqual(scan.unused, []);
  assert(scan.tableProblem?.includes("overlap"), scan.tableProblem);
});

Deno.test("findUnusedRanges() refuses a disk that is both partitioned and a filesystem", async () => {
  const scan = await _scanAfter(async (image) => {
    const mbr = new Uint8Array(66);
    const v = new DataView(mbr.buffer);
    mbr[4] = 0x83;
    v.setUint32(8, 2048, true);
    v.setUint32(12, 4096, true);
    mbr[64] = 0x55;
    mbr[65] = 0xaa;
    await _poke(image, 446, [...mbr]);
  });
  assert.deepStrictEqual(scan.unused, []);
  assert(scan.tableProblem?.startsWith("both a mbr table"), scan.tableProblem);
});
