import assert from "node:assert/strict";
import { Coalescer } from "./coalesce.ts";

Deno.test("Coalescer.run() joins the running task of a key, and forgets it once settled", async () => {
  const coalescer = new Coalescer<number>();
  let calls = 0;
  let finish!: (n: number) => void;
  const task = () => {
    calls++;
    return new Promise<number>((resolve) => finish = resolve);
  };
  const a = coalescer.run("k", task);
  const b = coalescer.run("k", task);
  assert.equal(coalescer.running("k"), a);
  assert.equal(coalescer.running("other"), undefined);
  assert.equal(calls, 1);
  finish(7);
  assert.deepEqual(await Promise.all([a, b]), [7, 7]);
  assert.equal(coalescer.size, 0);
  assert.equal(
    await coalescer.run("k", () => Promise.resolve(8)),
    8,
    "a new task after it settled",
  );
});

Deno.test("Coalescer.run() gives a task's failure to every joiner, then lets the key run again", async () => {
  const coalescer = new Coalescer<number>();
  const failing = () => Promise.reject(new Error("link down"));
  const a = coalescer.run("k", failing);
  const b = coalescer.run("k", () => Promise.resolve(1));
  await assert.rejects(a, /link down/);
  await assert.rejects(b, /link down/);
  assert.equal(await coalescer.run("k", () => Promise.resolve(2)), 2);
});
