import assert from "node:assert/strict";
import { PermanentError } from "../errors.ts";
import { FileDevice } from "./file_device.ts";
import { ReadOnlyDevice } from "./read_only_device.ts";

Deno.test("ReadOnlyDevice reads through and refuses every change, leaving the disk as it was", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/disk.raw`;
    const bytes = new Uint8Array(1 << 20).map((_, i) => i * 7);
    await Deno.writeFile(path, bytes);
    const disk = new ReadOnlyDevice(await FileDevice.open(path));
    assert.equal(disk.readOnly, true);
    assert.equal(disk.sizeBytes, 1 << 20);
    const got = new Uint8Array(4096);
    await disk.read(8192, got);
    assert.deepEqual(got, bytes.subarray(8192, 8192 + 4096));
    await assert.rejects(disk.write(0, new Uint8Array(512)), PermanentError);
    await assert.rejects(disk.trim(0, 4096), PermanentError);
    await assert.rejects(disk.writeZeroes(0, 4096), /served read-only/);
    await disk.flush();
    await disk.close();
    assert.deepEqual(await Deno.readFile(path), bytes);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
