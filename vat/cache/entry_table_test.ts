import assert from "node:assert/strict";
import { EntryTable } from "./entry_table.ts";

/** A 32-byte "hash" whose first bytes collide often (small `spread`), to exercise probing. */
function hashOf(n: number, spread: number): Uint8Array {
  const h = new Uint8Array(32);
  h[0] = n % spread;
  new DataView(h.buffer).setUint32(28, n);
  return h;
}

Deno.test("EntryTable agrees with a Map through random adds, replaces and deletes", () => {
  for (const spread of [1, 7, 256]) {
    const table = new EntryTable(500);
    const model = new Map<number, number>();
    let seed = 12345;
    const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) % 400;
    for (let step = 0; step < 20_000; step++) {
      const n = next();
      if (step % 3 === 2) {
        table.delete(hashOf(n, spread));
        model.delete(n);
      } else {
        table.set(hashOf(n, spread), { slotBytes: 4096, slot: step, length: n + 1 });
        model.set(n, step);
      }
      assert.equal(table.size, model.size);
    }
    for (let n = 0; n < 400; n++) {
      const got = table.get(hashOf(n, spread));
      const want = model.get(n);
      assert.deepEqual(
        got,
        want === undefined ? undefined : { slotBytes: 4096, slot: want, length: n + 1 },
      );
    }
  }
});

Deno.test("EntryTable holds at most maxEntries rows: a full table forgets them all", () => {
  const table = new EntryTable(100);
  for (let n = 0; n < 100; n++) table.set(hashOf(n, 256), { slotBytes: 4096, slot: n, length: 1 });
  assert.equal(table.size, 100);
  table.set(hashOf(5, 256), { slotBytes: 8192, slot: 5, length: 2 }); // a replace: kept
  assert.equal(table.size, 100);
  table.set(hashOf(100, 256), { slotBytes: 4096, slot: 100, length: 1 });
  assert.equal(table.size, 1);
  assert.equal(table.get(hashOf(5, 256)), undefined);
  assert.deepEqual(table.get(hashOf(100, 256)), { slotBytes: 4096, slot: 100, length: 1 });
});
