import assert from "node:assert/strict";
import { parseRange } from "./object_reads.ts";

Deno.test("parseRange() reads one range, clamps it to the object, and knows the unsatisfiable", () => {
  assert.deepEqual(parseRange("bytes=2-4", 10), { start: 2, end: 4 });
  assert.deepEqual(parseRange("bytes=7-100", 10), { start: 7, end: 9 });
  assert.deepEqual(parseRange("bytes=3-", 10), { start: 3, end: 9 });
  assert.deepEqual(parseRange("bytes=-3", 10), { start: 7, end: 9 });
  assert.deepEqual(parseRange("bytes=-30", 10), { start: 0, end: 9 });
  assert.equal(parseRange("bytes=10-", 10), "unsatisfiable");
  assert.equal(parseRange("bytes=10-20", 10), "unsatisfiable");
  assert.equal(parseRange("bytes=0-9", 0), "unsatisfiable");
  assert.equal(parseRange("bytes=-0", 10), "unsatisfiable");
});

Deno.test("parseRange() ignores what it does not serve, so the whole object is sent", () => {
  assert.equal(parseRange(undefined, 10), null);
  assert.equal(parseRange("bytes=5-3", 10), null);
  assert.equal(parseRange("bytes=0-1,4-5", 10), null);
  assert.equal(parseRange("items=0-1", 10), null);
  assert.equal(parseRange("bytes=-", 10), null);
});
