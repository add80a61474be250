import assert from "node:assert/strict";
import { FileDevice } from "./file_device.ts";
import { ConflictError, NotFoundError, PermanentError, UsageError } from "../errors.ts";

/** Asserts that `op` rejects with an instance of `type` whose message includes `text`. */
async function assertRejects(
  op: () => Promise<unknown>,
  type: new (...args: never[]) => Error,
  text = "",
): Promise<Error> {
  let caught: unknown;
  await assert.rejects(op(), (err) => {
    caught = err;
    return err instanceof type && err.message.includes(text);
  });
  return caught as Error;
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vat-file-device-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

async function readAll(device: FileDevice): Promise<Uint8Array> {
  const bytes = new Uint8Array(device.sizeBytes);
  await device.read(0, bytes);
  return bytes;
}

Deno.test("FileDevice.create() makes a sparse file that reads as zeroes", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/disk.raw`;
    const device = await FileDevice.create(path, 64 << 20);
    try {
      assert.deepEqual(device.sizeBytes, 64 << 20);
      assert.deepEqual(device.readOnly, false);
      assert.deepEqual(device.preferredBlockBytes, 4096);
      const bytes = new Uint8Array(1 << 20);
      await device.read(63 << 20, bytes);
      assert(bytes.every((b) => b === 0));
    } finally {
      await device.close();
    }
    const info = await Deno.stat(path);
    assert.deepEqual(info.size, 64 << 20);
    assert(info.blocks! * 512 < 1 << 20, `file should be sparse, has ${info.blocks} blocks`);
  });
});

Deno.test("FileDevice.create() refuses an existing path and leaves it alone", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/disk.raw`;
    await Deno.writeFile(path, pattern(100, 1));
    const err = await assertRejects(() => FileDevice.create(path, 4096), ConflictError);
    assert(err.message.includes(path));
    assert.deepEqual(await Deno.readFile(path), pattern(100, 1));
  });
});

Deno.test("FileDevice.create() and open() refuse a preferred block size that is no power of two", async () => {
  await withTempDir(async (dir) => {
    await assertRejects(
      () => FileDevice.create(`${dir}/a.raw`, 4096, { preferredBlockBytes: 1000 }),
      UsageError,
      "power of two",
    );
    await assertRejects(() => Deno.stat(`${dir}/a.raw`), Deno.errors.NotFound);
  });
});

Deno.test("FileDevice.open() reports a missing file and a directory", async () => {
  await withTempDir(async (dir) => {
    await assertRejects(() => FileDevice.open(`${dir}/nope.raw`), NotFoundError, "nope.raw");
    await assertRejects(() => FileDevice.open(dir), UsageError, "not a regular file");
  });
});

Deno.test("FileDevice.open() takes the file's size and contents", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/disk.raw`;
    await Deno.writeFile(path, pattern(10_000, 7));
    const device = await FileDevice.open(path, { preferredBlockBytes: 65536 });
    try {
      assert.deepEqual(device.sizeBytes, 10_000);
      assert.deepEqual(device.preferredBlockBytes, 65536);
      assert.deepEqual(await readAll(device), pattern(10_000, 7));
    } finally {
      await device.close();
    }
  });
});

Deno.test("FileDevice writes at unaligned offsets read back and reach the file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/disk.raw`;
    const device = await FileDevice.create(path, 1 << 20);
    const expected = new Uint8Array(1 << 20);
    try {
      for (
        const [offset, length, seed] of [[1000, 5000, 1], [8191, 2, 2], [0, 1, 3], [
          (1 << 20) - 777,
          777,
          4,
        ]]
      ) {
        await device.write(offset, pattern(length, seed));
        expected.set(pattern(length, seed), offset);
      }
      const part = new Uint8Array(5000);
      await device.read(1000, part);
      assert.deepEqual(part, pattern(5000, 1));
      assert.deepEqual(await readAll(device), expected);
      await device.flush();
    } finally {
      await device.close();
    }
    assert.deepEqual(await Deno.readFile(path), expected);
  });
});

Deno.test("FileDevice refuses requests outside the disk and changes nothing", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/disk.raw`;
    await Deno.writeFile(path, pattern(8192, 5));
    const device = await FileDevice.open(path);
    try {
      await assertRejects(() => device.read(8000, new Uint8Array(193)), UsageError, "outside");
      await assertRejects(() => device.read(-1, new Uint8Array(1)), UsageError);
      await assertRejects(() => device.write(8192, new Uint8Array(1)), UsageError);
      await assertRejects(() => device.trim(4096, 4097), UsageError);
      await assertRejects(() => device.writeZeroes(0.5, 1), UsageError);
    } finally {
      await device.close();
    }
    assert.deepEqual(await Deno.readFile(path), pattern(8192, 5));
  });
});

Deno.test("FileDevice opened read-only refuses write, trim and writeZeroes", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/disk.raw`;
    await Deno.writeFile(path, pattern(4096, 9));
    const device = await FileDevice.open(path, { readOnly: true });
    try {
      assert.deepEqual(device.readOnly, true);
      await assertRejects(() => device.write(0, new Uint8Array(1)), PermanentError, "read-only");
      await assertRejects(() => device.trim(0, 4096), PermanentError, "read-only");
      await assertRejects(() => device.writeZeroes(0, 1), PermanentError, "read-only");
      await device.flush();
      assert.deepEqual(await readAll(device), pattern(4096, 9));
    } finally {
      await device.close();
    }
    assert.deepEqual(await Deno.readFile(path), pattern(4096, 9));
  });
});

Deno.test("FileDevice.writeZeroes() zeroes exactly the range, across many pieces", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/disk.raw`;
    const size = 5 << 20;
    await Deno.writeFile(path, pattern(size, 11));
    const device = await FileDevice.open(path);
    const expected = pattern(size, 11);
    try {
      await device.writeZeroes(12345, (3 << 20) + 4321);
      expected.fill(0, 12345, 12345 + (3 << 20) + 4321);
      await device.trim(size - 100_000, 1000);
      expected.fill(0, size - 100_000, size - 99_000);
      assert.deepEqual(await readAll(device), expected);
    } finally {
      await device.close();
    }
    assert.deepEqual(await Deno.readFile(path), expected);
  });
});

Deno.test("FileDevice.trim() of the tail leaves a hole and keeps the size", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/disk.raw`;
    const size = 8 << 20;
    await Deno.writeFile(path, pattern(size, 13));
    const before = (await Deno.stat(path)).blocks!;
    const device = await FileDevice.open(path);
    try {
      await device.trim(1 << 20, size - (1 << 20));
      const expected = pattern(size, 13).fill(0, 1 << 20);
      assert.deepEqual(await readAll(device), expected);
    } finally {
      await device.close();
    }
    const after = await Deno.stat(path);
    assert.deepEqual(after.size, size);
    assert(after.blocks! < before / 2, `blocks ${before} -> ${after.blocks}: no hole`);
  });
});

Deno.test("FileDevice.writeZeroes() over a hole keeps it a hole", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/disk.raw`;
    const device = await FileDevice.create(path, 16 << 20);
    try {
      await device.write(0, pattern(4096, 1));
      await device.writeZeroes(4096, 8 << 20);
      await device.flush();
    } finally {
      await device.close();
    }
    const info = await Deno.stat(path);
    assert(info.blocks! * 512 < 1 << 20, `zeroing a hole allocated ${info.blocks} blocks`);
  });
});

Deno.test("FileDevice serves many concurrent reads and writes correctly", async () => {
  await withTempDir(async (dir) => {
    const device = await FileDevice.create(`${dir}/disk.raw`, 4 << 20);
    try {
      const blocks = 256;
      const blockBytes = 16384;
      await Promise.all(
        Array.from(
          { length: blocks },
          (_, i) => device.write(i * blockBytes, pattern(blockBytes, i)),
        ),
      );
      const reads = await Promise.all(Array.from({ length: blocks }, async (_, i) => {
        const bytes = new Uint8Array(blockBytes);
        await device.read(i * blockBytes, bytes);
        return bytes;
      }));
      reads.forEach((bytes, i) => assert.deepEqual(bytes, pattern(blockBytes, i), `block ${i}`));
    } finally {
      await device.close();
    }
  });
});

Deno.test("FileDevice.close() flushes, and later calls reject", async () => {
  await withTempDir(async (dir) => {
    const device = await FileDevice.create(`${dir}/disk.raw`, 4096);
    await device.write(0, pattern(10, 1));
    await device.close();
    await device.close();
    await assertRejects(() => device.read(0, new Uint8Array(1)), UsageError, "closed");
    await assertRejects(() => device.flush(), UsageError, "closed");
    assert.deepEqual((await Deno.readFile(`${dir}/disk.raw`)).subarray(0, 10), pattern(10, 1));
  });
});

Deno.test({
  name: "FileDevice reports a full file system as a PermanentError saying disk full",
  // Needs a small file system to fill: a tmpfs, which only root can mount.
  ignore: Deno.build.os !== "linux" || Deno.uid() !== 0,
  fn: async () => {
    await withTempDir(async (dir) => {
      const mounted = await new Deno.Command("mount", {
        args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir],
        stderr: "null",
      }).output();
      if (!mounted.success) return; // e.g. a container without CAP_SYS_ADMIN
      try {
        const device = await FileDevice.create(`${dir}/disk.raw`, 8 << 20);
        try {
          const err = await assertRejects(
            () => device.write(0, pattern(4 << 20, 1)),
            PermanentError,
            "disk full",
          );
          assert(err.message.includes("disk.raw"));
        } finally {
          await device.close().catch(() => {});
        }
      } finally {
        await new Deno.Command("umount", { args: [dir] }).output();
      }
    });
  },
});
