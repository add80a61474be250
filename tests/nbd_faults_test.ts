/**
 * Faults below vat's NBD server, seen by real NBD clients (qemu-io, nbdcopy, qemu-img
 * from Debian's qemu-utils and libnbd-bin):
 *
 * - a `FaultyDevice` over a raw file fails a fraction of reads (EIO, short reads,
 *   timeouts): the client gets an I/O error for those, and every byte it does get
 *   equals the file's;
 * - a version disk (`ChunkedDisk` through the chunk cache) over a `FaultyStore` that
 *   fails, corrupts and cuts a fraction of the repository's answers: without retries
 *   some reads fail and none is wrong; with the retrying store the whole disk reads back
 *   byte for byte;
 * - writes through the copy-on-write overlay whose base chunk cannot be fetched fail
 *   with EIO and change nothing else of the chunk.
 */

import assert from "node:assert/strict";
import { generateSigningKey } from "../vat/auth/signing_key.ts";
import { ChunkCache } from "../vat/cache/chunk_cache.ts";
import type { BlockDevice } from "../vat/disk/block_device.ts";
import { FaultyDevice, type FaultyDeviceOptions } from "../vat/disk/faulty_device.ts";
import { FileDevice } from "../vat/disk/file_device.ts";
import { openVersionDisk } from "../vat/disk/version_disk.ts";
import { seededRandom } from "../vat/fault_dice.ts";
import { serveNbd } from "../vat/nbd/nbd_server.ts";
import { publishDisks } from "../vat/repo/publish.ts";
import { Repository } from "../vat/repo/repository.ts";
import type { Store } from "../vat/repo/store.ts";
import { FaultyStore } from "../vat/repo/store_faulty.ts";
import { FileStore } from "../vat/repo/store_file.ts";
import { RetryingStore } from "../vat/repo/store_retrying.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const POISON = 0xee;

/** Incompressible bytes with no zero runs (so nothing is published or copied as a hole). */
function imageBytes(sizeBytes: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  const image = new Uint8Array(sizeBytes);
  for (let i = 0; i < image.length; i++) image[i] = 1 + random() * 255;
  return image;
}

async function run(command: string, args: string[]) {
  const output = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder();
  return {
    code: output.code,
    stdout: text.decode(output.stdout),
    stderr: text.decode(output.stderr),
  };
}

/** Serves `device` as the default export on a Unix socket in `dir` while `fn` runs. */
async function serving(
  dir: string,
  device: BlockDevice,
  fn: (uri: string, logged: string[]) => Promise<void>,
): Promise<void> {
  const socketPath = `${dir}/nbd.sock`;
  const logged: string[] = [];
  const server = serveNbd({
    exports: new Map([["", device]]),
    socketPath,
    log: (message) => logged.push(message),
  });
  try {
    await fn(`nbd+unix:///?socket=${socketPath}`, logged);
  } finally {
    await server.close();
  }
}

interface QemuIoReads {
  ok: number;
  failed: number;
  /** Bytes checked against the image. */
  checkedBytes: number;
}

/**
 * Reads `count` blocks of `blockBytes` at seeded offsets with one qemu-io, dumping
 * them in hex; checks every dumped byte against `image` and counts the reads that
 * failed with an I/O error.
 */
async function qemuIoReads(
  uri: string,
  image: Uint8Array,
  count: number,
  blockBytes: number,
  seed: number,
): Promise<QemuIoReads> {
  const random = seededRandom(seed);
  const blocks = image.length / blockBytes;
  const args = ["-f", "raw", "-r"];
  for (let i = 0; i < count; i++) {
    args.push("-c", `read -v ${Math.floor(random() * blocks) * blockBytes} ${blockBytes}`);
  }
  const { stdout, stderr } = await run("qemu-io", [...args, uri]);
  const result: QemuIoReads = { ok: 0, failed: 0, checkedBytes: 0 };
  for (const line of `${stdout}\n${stderr}`.split("\n")) {
    const dump = /^([0-9a-f]{8}): {2}((?:[0-9a-f]{2} )+)/.exec(line);
    if (dump) {
      const at = parseInt(dump[1], 16);
      const bytes = dump[2].trim().split(" ").map((hex) => parseInt(hex, 16));
      bytes.forEach((byte, i) => {
        if (byte !== image[at + i]) {
          assert.fail(
            `qemu-io got 0x${byte.toString(16)} at ${at + i}, the disk holds ` +
              `0x${image[at + i].toString(16)}${byte === POISON ? " (a short read's poison)" : ""}`,
          );
        }
      });
      result.checkedBytes += bytes.length;
    } else if (/^read \d+\/\d+ bytes at offset/.test(line)) result.ok++;
    else if (line === "read failed: Input/output error") result.failed++;
    else if (/failed/.test(line)) assert.fail(`qemu-io: unexpected ${line}`);
  }
  assert.equal(result.ok + result.failed, count, `every read answered:\n${stderr}`);
  assert.equal(result.checkedBytes, result.ok * blockBytes);
  return result;
}

/**
 * Copies the export with nbdcopy into a file filled with poison first. Returns how it
 * ended; checks that every 4 KiB block of the copy is either the image's or a block
 * nbdcopy never got: still poison, or zeroes (nbdcopy zeroes the rest of its
 * destination when a read fails; the image holds no zero byte). Never anything else.
 */
async function nbdcopyInto(dir: string, uri: string, image: Uint8Array, args: string[] = []) {
  const copy = `${dir}/copy.raw`;
  await Deno.writeFile(copy, new Uint8Array(image.length).fill(POISON));
  const result = await run("nbdcopy", ["--request-size=65536", ...args, uri, copy]);
  const copied = await Deno.readFile(copy);
  assert.equal(copied.length, image.length);
  let goodBlocks = 0;
  for (let at = 0; at < image.length; at += 4 * KiB) {
    const block = copied.subarray(at, at + 4 * KiB);
    if (Buffer.from(block).equals(image.subarray(at, at + 4 * KiB))) goodBlocks++;
    else {
      assert.ok(
        block.every((b) => b === POISON) || block.every((b) => b === 0),
        `block at ${at} is neither data nor unread`,
      );
    }
  }
  await Deno.remove(copy);
  return { ...result, goodBlocks, blocks: image.length / (4 * KiB) };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vat-nbd-faults-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A `FaultyDevice` over a read-only raw file of `image`. */
async function faultyFile(dir: string, image: Uint8Array, options: FaultyDeviceOptions) {
  await Deno.writeFile(`${dir}/disk.raw`, image);
  return new FaultyDevice(await FileDevice.open(`${dir}/disk.raw`, { readOnly: true }), options);
}

Deno.test("NBD over a FaultyDevice: qemu-io gets EIO for failed reads and right bytes otherwise", async () => {
  await withDir(async (dir) => {
    const image = imageBytes(4 * MiB, 1);
    const faulty = await faultyFile(dir, image, {
      seed: 20261205,
      failRate: 0.25,
      kinds: ["eio", "short-read", "timeout"],
      hangMs: 50,
    });
    try {
      await serving(dir, faulty, async (uri, logged) => {
        const reads = await qemuIoReads(uri, image, 200, 4 * KiB, 8);
        const { injected } = faulty.dice;
        assert.ok(reads.failed > 20 && reads.ok > 100, JSON.stringify(reads));
        assert.equal(reads.failed, injected.eio + injected["short-read"] + injected.timeout);
        assert.ok(injected.eio && injected["short-read"] && injected.timeout, "every kind seen");
        assert.equal(logged.length, reads.failed, "the server logs each failure once");
        assert.match(
          logged.find((l) => /short read/.test(l))!,
          /read of 4096 bytes at offset \d+ failed: injected fault: short read/,
        );
      });
    } finally {
      await faulty.close();
    }
  });
});

Deno.test("NBD over a FaultyDevice: nbdcopy fails with an I/O error and wrote only right bytes", async () => {
  await withDir(async (dir) => {
    const image = imageBytes(8 * MiB, 2);
    const faulty = await faultyFile(dir, image, {
      seed: 7,
      failRate: 0.1,
      kinds: ["eio", "short-read"],
    });
    try {
      await serving(dir, faulty, async (uri) => {
        const copy = await nbdcopyInto(dir, uri, image, ["--requests=8"]);
        assert.notEqual(copy.code, 0, "nbdcopy reports the failure");
        assert.match(copy.stderr, /Input\/output error/);
        assert.ok(copy.goodBlocks > 0 && copy.goodBlocks < copy.blocks, `${copy.goodBlocks} good`);
      });
    } finally {
      await faulty.close();
    }
  });
});

/** A published 6 MiB disk in a file repository under `dir`, and its bytes. */
async function publishedDisk(dir: string) {
  const image = imageBytes(6 * MiB, 3);
  const store = new FileStore(`${dir}/repo`);
  const repo = await Repository.init(store, { kind: "appliance", chunkSizeBytes: 64 * KiB });
  const key = await generateSigningKey(`${dir}/key`);
  const source = {
    sizeBytes: image.length,
    read: (offset: number, into: Uint8Array) => {
      into.set(image.subarray(offset, offset + into.length));
      return Promise.resolve();
    },
  };
  await publishDisks(repo, [["system", source]], { memoryMiB: 64, cpus: 1 }, { key });
  return { image, store };
}

/** Serves version 1's system disk read through a fresh cache over `store`. */
async function servingVersionDisk(
  dir: string,
  store: Store,
  retryForMs: number,
  fn: (uri: string) => Promise<void>,
): Promise<void> {
  const repo = await Repository.open(store);
  const version = await repo.readVersion(1);
  const cacheDir = `${dir}/cache-${crypto.randomUUID()}`;
  const cache = await ChunkCache.open({ dir: cacheDir, budgetBytes: 64 * MiB, retryForMs });
  try {
    const disk = await openVersionDisk(repo, version, "system", cache);
    await serving(dir, disk.device, fn);
  } finally {
    await cache.close();
  }
}

Deno.test("NBD over the chunk cache and a failing store: reads fail or are right, never wrong", async () => {
  await withDir(async (dir) => {
    const { image, store } = await publishedDisk(dir);
    // No retrying store, and the cache gives up at once: many reads fail.
    const faulty = new FaultyStore(store, {
      seed: 31,
      failRate: 0.5,
      kinds: ["transient", "timeout", "corrupt", "truncate"],
      hangMs: 20,
      keys: (key) => key.startsWith("chunks/"),
    });
    await servingVersionDisk(dir, faulty, 0, async (uri) => {
      const reads = await qemuIoReads(uri, image, 150, 64 * KiB, 4);
      assert.ok(reads.failed > 0 && reads.ok > 0, JSON.stringify(reads));
      assert.ok(faulty.dice.injected.corrupt > 0 && faulty.dice.injected.truncate > 0);
    });
  });
});

Deno.test("NBD over the chunk cache and a failing store behind RetryingStore: the whole disk, right", async () => {
  await withDir(async (dir) => {
    const { image, store } = await publishedDisk(dir);
    // A third of the calls fail transiently, time out or lose their reply; one body in
    // twenty comes corrupt or cut short. The retrying store rides out the first, the
    // chunk's hash check and re-read the second: a chunk is lost only if three reads in
    // a row come damaged (1 in 8000).
    const damaging = new FaultyStore(store, {
      seed: 33,
      failRate: 0.05,
      kinds: ["corrupt", "truncate"],
    });
    const faulty = new FaultyStore(damaging, {
      seed: 32,
      failRate: 0.33,
      kinds: ["transient", "timeout", "lost-reply"],
      hangMs: 20,
    });
    const retrying = new RetryingStore(faulty, { baseDelayMs: 5 });
    await servingVersionDisk(dir, retrying, 10_000, async (uri) => {
      // One connection, one request at a time: the store sees its calls in one order,
      // so the seeds above give the same faults at every run.
      const copy = await nbdcopyInto(dir, uri, image, ["--connections=1", "--requests=1"]);
      assert.equal(copy.code, 0, copy.stderr);
      assert.equal(copy.goodBlocks, copy.blocks, "every block copied right");
      // And again, warm, as qemu-img compare reads it.
      await Deno.writeFile(`${dir}/image.raw`, image);
      const compared = await run("qemu-img", [
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        `${dir}/image.raw`,
        uri,
      ]);
      assert.match(compared.stdout, /Images are identical/, compared.stderr);
    });
    const { injected } = faulty.dice;
    assert.ok(injected.transient && injected.timeout, JSON.stringify(injected));
    assert.ok(damaging.dice.injected.corrupt && damaging.dice.injected.truncate);
  });
});

Deno.test("NBD writes over a failing base: a failed copy-on-write changes nothing around it", async () => {
  await withDir(async (dir) => {
    const { image, store } = await publishedDisk(dir);
    const chunkBytes = 64 * KiB;
    // Each write goes to its own chunk, 3000 bytes at an unaligned offset: the overlay
    // must read the rest of the chunk from the base, which fails half the time.
    const writes = Array.from({ length: 40 }, (_, i) => ({
      offset: (i * 2 + 1) * chunkBytes + 1000 + i,
      length: 3000,
      byte: 1 + i,
    }));
    const faulty = new FaultyStore(store, {
      seed: 41,
      failRate: 0.5,
      kinds: ["transient"],
      keys: (key) => key.startsWith("chunks/"),
    });
    const open = async (from: Store, retryForMs: number) => {
      const repo = await Repository.open(from);
      const cache = await ChunkCache.open({
        dir: `${dir}/cache`,
        budgetBytes: 64 * MiB,
        retryForMs,
      });
      const disk = await openVersionDisk(repo, await repo.readVersion(1), "system", cache, {
        overlayPath: `${dir}/overlay`,
      });
      return {
        device: disk.device,
        close: async () => {
          await disk.device.close();
          await cache.close();
        },
      };
    };
    const failing = await open(faulty, 0);
    const failed = new Set<number>();
    try {
      await serving(dir, failing.device, async (uri) => {
        const args = ["-f", "raw"];
        for (const w of writes) args.push("-c", `write -P ${w.byte} ${w.offset} ${w.length}`);
        const { stdout, stderr } = await run("qemu-io", [...args, uri]);
        const lines = `${stdout}\n${stderr}`.split("\n").filter((l) => /^write|wrote/.test(l));
        assert.equal(lines.length, writes.length, `${stdout}\n${stderr}`);
        lines.forEach((line, i) => {
          if (line === "write failed: Input/output error") failed.add(i);
          else {assert.match(
              line,
              new RegExp(`^wrote 3000/3000 bytes at offset ${writes[i].offset}`),
            );}
        });
      });
    } finally {
      await failing.close();
    }
    assert.ok(failed.size > 0 && failed.size < writes.length, `${failed.size} writes failed`);

    // Read it all back over the healthy store: each chunk is the base's, with the write
    // over it if the write succeeded (a failed write may or may not have landed, whole).
    const healthy = await open(store, 1000);
    try {
      const disk = new Uint8Array(image.length);
      await healthy.device.read(0, disk);
      const expected = image.slice();
      writes.forEach((w, i) => {
        if (!failed.has(i)) expected.fill(w.byte, w.offset, w.offset + w.length);
      });
      writes.forEach((w, i) => {
        if (!failed.has(i)) return;
        const region = disk.subarray(w.offset, w.offset + w.length);
        if (region.every((b) => b === w.byte)) expected.fill(w.byte, w.offset, w.offset + w.length);
      });
      for (let at = 0; at < image.length; at += chunkBytes) {
        const got = disk.subarray(at, at + chunkBytes);
        assert.ok(
          Buffer.from(got).equals(expected.subarray(at, at + chunkBytes)),
          `chunk at ${at}`,
        );
      }
    } finally {
      await healthy.close();
    }
  });
});
