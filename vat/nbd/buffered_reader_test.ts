import assert from "node:assert/strict";
import { BufferedReader, type ByteSource } from "./buffered_reader.ts";
import { ProtocolError } from "../errors.ts";

/** A source that hands out `bytes` in pieces of at most `pieceBytes`, counting reads. */
function source(bytes: Uint8Array, pieceBytes: number): ByteSource & { reads: number } {
  let at = 0;
  const src = {
    reads: 0,
    read(into: Uint8Array): Promise<number | null> {
      src.reads++;
      if (at === bytes.length) return Promise.resolve(null);
      const n = Math.min(into.length, pieceBytes, bytes.length - at);
      into.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
  return src;
}

function counting(length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => i & 0xff);
}

Deno.test("BufferedReader.readFull() assembles messages from pieces of any size", async () => {
  const bytes = counting(100_000);
  for (const pieceBytes of [1, 7, 28, 4096, 100_000]) {
    const reader = new BufferedReader(source(bytes, pieceBytes), 1024);
    const got: number[] = [];
    for (const want of [28, 3, 50_000, 0, 1000, 48_969]) {
      const into = new Uint8Array(want);
      assert.equal(await reader.readFull(into), true);
      got.push(...into);
    }
    assert.deepEqual(Uint8Array.from(got), bytes, `pieces of ${pieceBytes}`);
    assert.equal(await reader.readFull(new Uint8Array(1)), false);
  }
});

Deno.test("BufferedReader.readFull() serves many small messages from one read", async () => {
  const src = source(counting(28 * 100), 1 << 20);
  const reader = new BufferedReader(src);
  for (let i = 0; i < 100; i++) assert.equal(await reader.readFull(new Uint8Array(28)), true);
  assert.equal(src.reads, 1);
});

Deno.test("BufferedReader.readFull() returns false at a clean end and throws part way", async () => {
  const reader = new BufferedReader(source(counting(40), 16));
  assert.equal(await reader.readFull(new Uint8Array(28)), true);
  await assert.rejects(
    reader.readFull(new Uint8Array(28)),
    (err) => err instanceof ProtocolError && err.message.includes("12 of a 28-byte message"),
  );
  const empty = new BufferedReader(source(new Uint8Array(0), 16));
  assert.equal(await empty.readFull(new Uint8Array(28)), false);
});

Deno.test("BufferedReader.skip() drops bytes and throws if the stream ends first", async () => {
  const reader = new BufferedReader(source(counting(10_000), 300), 1024);
  await reader.skip(5000);
  const into = new Uint8Array(10);
  await reader.readFull(into);
  assert.deepEqual(into, counting(5010).subarray(5000));
  await assert.rejects(reader.skip(5000), ProtocolError);
});
