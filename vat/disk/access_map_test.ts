import assert from "node:assert/strict";
import { AccessMap } from "./access_map.ts";
import { FileDevice } from "./file_device.ts";
import { StatsDevice } from "./stats_device.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

Deno.test("AccessMap cuts a disk into at most 256 regions of whole chunks", () => {
  const small = new AccessMap(32 * MiB, 64 * KiB);
  assert.equal(small.regions, 256);
  assert.equal(small.regionBytes, 128 * KiB);
  const large = new AccessMap(4096 * MiB, 64 * KiB);
  assert.equal(large.regions, 256);
  assert.equal(large.regionBytes, 16 * MiB);
  const tiny = new AccessMap(200 * KiB, 64 * KiB);
  assert.equal(tiny.regions, 4);
  assert.equal(tiny.regionBytes, 64 * KiB);
  assert.equal(small.regionOfChunk(0), 0);
  assert.equal(small.regionOfChunk(3), 1);
  assert.equal(small.regionOfChunk(511), 255);
});

Deno.test("AccessMap spreads a request over the regions it covers", () => {
  const map = new AccessMap(1 * MiB, 64 * KiB, 4); // 4 regions of 256 KiB
  map.countRead(200 * KiB, 100 * KiB); // 56 KiB in region 0, 44 KiB in region 1
  map.countWrite(1 * MiB - 4 * KiB, 4 * KiB);
  map.countFetch(5);
  map.countFetch(4);
  const counts = map.counts();
  assert.deepEqual(counts.readBytes, [56 * KiB, 44 * KiB, 0, 0]);
  assert.deepEqual(counts.writtenBytes, [0, 0, 0, 4 * KiB]);
  assert.deepEqual(counts.fetchedChunks, [0, 2, 0, 0]);
  assert.equal(counts.regionBytes, 256 * KiB);
});

Deno.test("StatsDevice counts the requests it passes on, and only completed ones", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-stats-" });
  try {
    const file = await FileDevice.create(`${dir}/disk.raw`, 1 * MiB);
    const map = new AccessMap(file.sizeBytes, 64 * KiB, 4);
    const device = new StatsDevice(file, map);
    assert.equal(device.sizeBytes, 1 * MiB);
    await device.write(0, new Uint8Array(8 * KiB).fill(7));
    const back = new Uint8Array(8 * KiB);
    await device.read(0, back);
    assert.equal(back[100], 7);
    await device.trim(512 * KiB, 64 * KiB);
    await device.writeZeroes(768 * KiB, 4 * KiB);
    await assert.rejects(device.read(1 * MiB, new Uint8Array(512)));
    const counts = map.counts();
    assert.deepEqual(counts.readBytes, [8 * KiB, 0, 0, 0]);
    assert.deepEqual(counts.writtenBytes, [8 * KiB, 0, 64 * KiB, 4 * KiB]);
    await device.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
