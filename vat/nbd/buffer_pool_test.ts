import assert from "node:assert/strict";
import { BufferPool } from "./buffer_pool.ts";

Deno.test("BufferPool.take() gives headroom plus length, reusing given-back buffers", () => {
  const pool = new BufferPool({ headroom: 16, maxPooledBytes: 1 << 20 });
  const first = pool.take(131072);
  assert.equal(first.length, 16 + 131072);
  first[0] = 42;
  pool.give(first);
  const second = pool.take(100_000);
  assert.equal(second.length, 16 + 100_000);
  assert.equal(second.buffer, first.buffer);
  assert.notEqual(pool.take(100_000).buffer, first.buffer);
});

Deno.test("BufferPool keeps at most maxPooledBytes", () => {
  const pool = new BufferPool({ headroom: 0, maxPooledBytes: 8192 });
  const a = pool.take(4096);
  const b = pool.take(4096);
  const c = pool.take(4096);
  pool.give(a);
  pool.give(b);
  pool.give(c);
  const taken = [pool.take(4096), pool.take(4096), pool.take(4096)].map((x) => x.buffer);
  assert.ok(taken.includes(a.buffer) && taken.includes(b.buffer));
  assert.ok(!taken.includes(c.buffer));
});
