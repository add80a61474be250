import assert from "node:assert/strict";
import { type ByteSink, ReplyWriter } from "./reply_writer.ts";

/** A sink that takes at most `pieceBytes` per write, after a turn of the event loop. */
function sink(pieceBytes: number): ByteSink & { bytes: number[]; writes: number } {
  const s = {
    bytes: [] as number[],
    writes: 0,
    async write(data: Uint8Array): Promise<number> {
      s.writes++;
      await new Promise((resolve) => setTimeout(resolve, 0));
      const n = Math.min(pieceBytes, data.length);
      for (const byte of data.subarray(0, n)) s.bytes.push(byte);
      return n;
    },
  };
  return s;
}

function message(length: number, fill: number): Uint8Array {
  return new Uint8Array(length).fill(fill);
}

Deno.test("ReplyWriter writes messages whole and in order, despite short writes", async () => {
  const out = sink(1000);
  const writer = new ReplyWriter(out);
  const messages = [message(16, 1), message(200_000, 2), message(16, 3), message(5000, 4)];
  await Promise.all(messages.map((m) => writer.send(m)));
  const expected = messages.flatMap((m) => Array.from(m));
  assert.deepEqual(out.bytes, expected);
  assert.equal(writer.failure, undefined);
});

Deno.test("ReplyWriter sends small messages queued behind a write in one write", async () => {
  const out = sink(1 << 20);
  const writer = new ReplyWriter(out);
  const sent = [];
  for (let i = 0; i < 50; i++) sent.push(writer.send(message(16, i)));
  await Promise.all(sent);
  assert.equal(out.bytes.length, 50 * 16);
  assert.equal(out.writes, 2);
  assert.deepEqual(out.bytes.slice(16 * 49), Array(16).fill(49));
});

Deno.test("ReplyWriter drops messages after a failed write and never rejects", async () => {
  let writes = 0;
  const writer = new ReplyWriter({
    write() {
      writes++;
      return Promise.reject(new Deno.errors.BrokenPipe("peer went away"));
    },
  });
  await writer.send(message(16, 1));
  assert.ok(writer.failure instanceof Deno.errors.BrokenPipe);
  await writer.send(message(16, 2));
  await writer.drained();
  assert.equal(writes, 1);
});
