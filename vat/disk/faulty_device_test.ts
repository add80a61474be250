import assert from "node:assert/strict";
import { TransientError, UsageError } from "../errors.ts";
import { seededRandom } from "../fault_dice.ts";
import type { BlockDevice } from "./block_device.ts";
import { CowOverlay } from "./cow_overlay.ts";
import { FaultyDevice, SHORT_READ_POISON } from "./faulty_device.ts";
import { FileDevice } from "./file_device.ts";

const KiB = 1024;

async function withFile(
  sizeBytes: number,
  fn: (device: FileDevice, image: Uint8Array, dir: string) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "vat-faulty-test-" });
  try {
    const image = new Uint8Array(sizeBytes);
    const random = seededRandom(7);
    for (let i = 0; i < image.length; i++) image[i] = random() * 256;
    await Deno.writeFile(`${dir}/disk.raw`, image);
    const device = await FileDevice.open(`${dir}/disk.raw`);
    try {
      await fn(device, image, dir);
    } finally {
      await device.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Reads every block of `device` once, keeping what succeeded and counting failures. */
async function readAll(device: BlockDevice, blockBytes: number) {
  const got: { offset: number; data: Uint8Array }[] = [];
  const errors: Error[] = [];
  for (let offset = 0; offset < device.sizeBytes; offset += blockBytes) {
    const into = new Uint8Array(blockBytes);
    try {
      await device.read(offset, into);
      got.push({ offset, data: into });
    } catch (err) {
      errors.push(err as Error);
    }
  }
  return { got, errors };
}

Deno.test("FaultyDevice fails about the chosen fraction of reads, and the rest are right", async () => {
  await withFile(256 * KiB, async (file, image) => {
    const faulty = new FaultyDevice(file, {
      seed: 42,
      failRate: 0.3,
      kinds: ["eio", "short-read"],
    });
    const { got, errors } = await readAll(faulty, 512);
    assert.equal(got.length + errors.length, 512);
    assert.ok(errors.length > 100 && errors.length < 210, `${errors.length} of 512 failed`);
    assert.equal(errors.length, faulty.dice.total);
    assert.ok(faulty.dice.injected.eio > 0 && faulty.dice.injected["short-read"] > 0);
    for (const { offset, data } of got) {
      assert.deepEqual(data, image.subarray(offset, offset + data.length), `block at ${offset}`);
    }
    for (const err of errors) assert.match(err.message, /^injected fault: (I\/O error|short read)/);
  });
});

Deno.test("FaultyDevice is reproducible: the same seed fails the same calls", async () => {
  await withFile(64 * KiB, async (file) => {
    const failedBlocks = async (seed: number) => {
      const faulty = new FaultyDevice(file, { seed, failRate: 0.25, kinds: ["eio"] });
      const failed: number[] = [];
      for (let offset = 0; offset < file.sizeBytes; offset += 1024) {
        await faulty.read(offset, new Uint8Array(1024)).catch(() => failed.push(offset));
      }
      return failed;
    };
    const first = await failedBlocks(1234);
    assert.ok(first.length > 0);
    assert.deepEqual(await failedBlocks(1234), first);
    assert.notDeepEqual(await failedBlocks(1235), first);
  });
});

Deno.test("FaultyDevice short reads fail and poison what they did not deliver", async () => {
  await withFile(64 * KiB, async (file, image) => {
    const faulty = new FaultyDevice(file, { seed: 3, failRate: 1, kinds: ["short-read"] });
    const into = new Uint8Array(4096);
    await assert.rejects(faulty.read(8192, into), (err: Error) => {
      const got = Number(/delivered (\d+) bytes/.exec(err.message)![1]);
      assert.ok(got < into.length);
      assert.deepEqual(into.subarray(0, got), image.subarray(8192, 8192 + got));
      assert.ok(into.subarray(got).every((b) => b === SHORT_READ_POISON));
      return true;
    });
  });
});

Deno.test("FaultyDevice timeouts hang for hangMs then fail, and do nothing", async () => {
  await withFile(64 * KiB, async (file, image) => {
    const faulty = new FaultyDevice(file, {
      seed: 1,
      failRate: 1,
      kinds: ["timeout"],
      hangMs: 150,
    });
    const started = performance.now();
    await assert.rejects(faulty.write(0, new Uint8Array(512)), (err: Error) => {
      assert.ok(err instanceof TransientError);
      assert.match(err.message, /write of 512 bytes at offset 0 timed out after 150 ms/);
      return true;
    });
    assert.ok(performance.now() - started >= 140);
    const back = new Uint8Array(512);
    await file.read(0, back);
    assert.deepEqual(back, image.subarray(0, 512), "the timed-out write changed nothing");
  });
});

Deno.test("FaultyDevice slow calls answer late but right; close() wakes hanging calls", async () => {
  await withFile(64 * KiB, async (file, image) => {
    const slow = new FaultyDevice(file, { seed: 1, failRate: 1, kinds: ["slow"], hangMs: 100 });
    const into = new Uint8Array(1000);
    const started = performance.now();
    await slow.read(5000, into);
    assert.ok(performance.now() - started >= 90);
    assert.deepEqual(into, image.subarray(5000, 6000));
    // A long hang does not outlive the device.
    const hung = new FaultyDevice(file, {
      seed: 1,
      failRate: 1,
      kinds: ["timeout"],
      hangMs: 60_000,
    });
    const pending = assert.rejects(hung.read(0, new Uint8Array(10)), /the device was closed/);
    await hung.close();
    await pending;
  });
});

Deno.test("FaultyDevice fails only the calls it is told to", async () => {
  await withFile(64 * KiB, async (file) => {
    const faulty = new FaultyDevice(file, {
      seed: 9,
      failRate: 1,
      kinds: ["eio"],
      calls: ["flush"],
    });
    await faulty.write(0, new Uint8Array(512).fill(1));
    await faulty.read(0, new Uint8Array(512));
    await assert.rejects(faulty.flush(), /injected fault/);
  });
});

Deno.test("FaultyDevice refuses bad options", async () => {
  await withFile(4 * KiB, (file) => {
    assert.throws(() => new FaultyDevice(file, { seed: 1, failRate: 1.5 }), UsageError);
    assert.throws(() => new FaultyDevice(file, { seed: 0.5, failRate: 0.1 }), /seed/);
    assert.throws(
      () => new FaultyDevice(file, { seed: 1, failRate: 0.1, hangMs: 120_000 }),
      /hang time/,
    );
    assert.throws(
      // @ts-expect-error: an unknown kind, as a caller without types could give
      () => new FaultyDevice(file, { seed: 1, failRate: 0.1, kinds: ["bitflip"] }),
      /fault kinds must be some of eio, timeout, slow, short-read/,
    );
    return Promise.resolve();
  });
});

Deno.test("CowOverlay over a FaultyDevice never answers a failed read with data, nor late", async () => {
  // A read spanning many chunks of the base: some pieces fail at once, others answer
  // late. The overlay's read must settle only after every piece did, so nothing lands
  // in the caller's buffer after it failed.
  await withFile(256 * KiB, async (file, image, dir) => {
    const faulty = new FaultyDevice(file, {
      seed: 5,
      failRate: 0.5,
      kinds: ["eio", "slow"],
      hangMs: 50,
    });
    const base = Object.assign(faulty, {
      readChunk: async (i: number) => {
        const data = new Uint8Array(4096);
        await faulty.read(i * 4096, data);
        return data;
      },
    });
    const overlay = await CowOverlay.open({ base, path: `${dir}/overlay` });
    try {
      let failed = 0;
      for (let round = 0; round < 8; round++) {
        const into = new Uint8Array(64 * KiB);
        const offset = round * 16 * KiB;
        try {
          await overlay.read(offset, into);
          assert.deepEqual(into, image.subarray(offset, offset + into.length));
        } catch {
          failed++;
          const snapshot = into.slice();
          await new Promise((resolve) => setTimeout(resolve, 120));
          assert.deepEqual(into, snapshot, "nothing was written into the buffer after it failed");
        }
      }
      assert.ok(failed > 0, "some reads failed");
    } finally {
      await overlay.close();
    }
  });
});
