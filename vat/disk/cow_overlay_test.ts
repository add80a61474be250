import assert from "node:assert/strict";
import { IntegrityError } from "../errors.ts";
import type { ChunkSource } from "./cow_overlay.ts";
import { CowOverlay } from "./cow_overlay.ts";

const CHUNK = 4096;

/** A read-only base over bytes in memory, counting chunk reads. */
function memoryBase(bytes: Uint8Array): ChunkSource & { chunkReads: number } {
  const base = {
    sizeBytes: bytes.length,
    readOnly: true,
    preferredBlockBytes: CHUNK,
    chunkReads: 0,
    readChunk(i: number) {
      base.chunkReads++;
      const data = bytes.slice(i * CHUNK, Math.min(bytes.length, (i + 1) * CHUNK));
      return Promise.resolve(data.every((b) => b === 0) ? null : data);
    },
    read(offset: number, into: Uint8Array) {
      into.set(bytes.subarray(offset, offset + into.length));
      return Promise.resolve();
    },
    write: () => Promise.reject(new Error("read-only")),
    flush: () => Promise.resolve(),
    trim: () => Promise.reject(new Error("read-only")),
    writeZeroes: () => Promise.reject(new Error("read-only")),
    close: () => Promise.resolve(),
  };
  return base;
}

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

async function withOverlay(fn: (path: string, baseBytes: Uint8Array) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vat-overlay-test-" });
  try {
    // 10 chunks and a short tail; chunk 3 is all zeroes in the base.
    const baseBytes = pattern(10 * CHUNK + 1000, 7);
    baseBytes.fill(0, 3 * CHUNK, 4 * CHUNK);
    await fn(`${dir}/overlay`, baseBytes);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function readAll(dev: { sizeBytes: number; read(o: number, b: Uint8Array): Promise<void> }) {
  const out = new Uint8Array(dev.sizeBytes);
  await dev.read(0, out);
  return out;
}

Deno.test("CowOverlay.write() at unaligned offsets copies the base chunk first", async () => {
  await withOverlay(async (path, baseBytes) => {
    const base = memoryBase(baseBytes);
    const overlay = await CowOverlay.open({ base, path });
    const expected = baseBytes.slice();
    const piece = pattern(5000, 99);
    await overlay.write(CHUNK + 123, piece); // spans chunks 1 and 2
    expected.set(piece, CHUNK + 123);
    const tail = pattern(300, 5);
    await overlay.write(overlay.sizeBytes - 300, tail); // the short last chunk
    expected.set(tail, expected.length - 300);
    assert.deepEqual(await readAll(overlay), expected);
    assert.deepEqual(overlay.changedChunks(), [1, 2, 10]);
    assert.deepEqual(overlay.dirtyChunks(), [1, 2, 10]);
    assert.deepEqual(
      baseBytes,
      pattern(10 * CHUNK + 1000, 7).fill(0, 3 * CHUNK, 4 * CHUNK),
      "base untouched",
    );
    await overlay.close();
  });
});

Deno.test("CowOverlay keeps flushed writes across reopening, and discard forgets them", async () => {
  await withOverlay(async (path, baseBytes) => {
    const base = memoryBase(baseBytes);
    let overlay = await CowOverlay.open({ base, path });
    await overlay.write(5 * CHUNK + 10, pattern(100, 3));
    await overlay.writeZeroes(7 * CHUNK, CHUNK); // a whole chunk: no data written
    await overlay.writeZeroes(8 * CHUNK + 1, 10); // part of a chunk
    await overlay.flush();
    const expected = await readAll(overlay);
    await overlay.close();

    overlay = await CowOverlay.open({ base, path });
    assert.deepEqual(await readAll(overlay), expected);
    assert.ok(expected.subarray(7 * CHUNK, 8 * CHUNK).every((b) => b === 0));
    overlay.clearDirty([5]);
    assert.deepEqual(overlay.dirtyChunks(), [7, 8]);
    await overlay.close();

    overlay = await CowOverlay.open({ base, path, discard: true });
    assert.deepEqual(await readAll(overlay), baseBytes);
    assert.deepEqual(overlay.changedChunks(), []);
    await overlay.close();
  });
});

Deno.test("CowOverlay.readChunk() gives the overlay's view of a chunk", async () => {
  await withOverlay(async (path, baseBytes) => {
    const overlay = await CowOverlay.open({ base: memoryBase(baseBytes), path });
    assert.equal(await overlay.readChunk(3), null);
    await overlay.write(3 * CHUNK + 5, new Uint8Array([1, 2, 3]));
    const chunk = await overlay.readChunk(3);
    assert.deepEqual(chunk?.subarray(4, 9), new Uint8Array([0, 1, 2, 3, 0]));
    await overlay.writeZeroes(0, CHUNK);
    assert.equal(await overlay.readChunk(0), null);
    await overlay.close();
  });
});

Deno.test("CowOverlay serializes concurrent partial writes to one chunk", async () => {
  await withOverlay(async (path, baseBytes) => {
    const overlay = await CowOverlay.open({ base: memoryBase(baseBytes), path });
    const expected = baseBytes.slice();
    const writes = [];
    for (let k = 0; k < 16; k++) {
      const piece = new Uint8Array([k + 1, k + 1]);
      expected.set(piece, 6 * CHUNK + k * 200);
      writes.push(overlay.write(6 * CHUNK + k * 200, piece));
    }
    await Promise.all(writes);
    assert.deepEqual(await readAll(overlay), expected);
    await overlay.close();
  });
});

Deno.test("CowOverlay refuses a map that belongs to another disk, and reads out of range", async () => {
  await withOverlay(async (path, baseBytes) => {
    const overlay = await CowOverlay.open({ base: memoryBase(baseBytes), path });
    await overlay.write(0, new Uint8Array([1]));
    await overlay.close();
    await assert.rejects(
      CowOverlay.open({ base: memoryBase(baseBytes.subarray(0, 5 * CHUNK)), path }),
      (err: Error) => err instanceof IntegrityError && /does not match this disk/.test(err.message),
    );
    const again = await CowOverlay.open({ base: memoryBase(baseBytes), path });
    await assert.rejects(again.read(again.sizeBytes - 10, new Uint8Array(20)), /outside/);
    await again.close();
  });
});
