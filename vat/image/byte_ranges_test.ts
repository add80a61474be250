import assert from "node:assert/strict";
import { coversFully, mergeRanges, totalLength, zeroRanges } from "./byte_ranges.ts";

Deno.test("mergeRanges() sorts, joins touching and overlapping ranges, drops empty ones", () => {
  assert.deepStrictEqual(
    mergeRanges([
      { offset: 100, length: 10 },
      { offset: 0, length: 10 },
      { offset: 10, length: 5 },
      { offset: 50, length: 0 },
      { offset: 105, length: 20 },
    ]),
    [{ offset: 0, length: 15 }, { offset: 100, length: 25 }],
  );
  assert.equal(totalLength([{ offset: 0, length: 15 }, { offset: 100, length: 25 }]), 40);
});

Deno.test("zeroRanges() zeroes exactly the bytes of the ranges that fall in the buffer", () => {
  const ranges = [{ offset: 2, length: 3 }, { offset: 9, length: 4 }, { offset: 20, length: 5 }];
  for (const bufOffset of [0, 3, 8, 11, 30]) {
    const buf = new Uint8Array(8).fill(7);
    zeroRanges(buf, bufOffset, ranges);
    const expected = [...Array(8)].map((_, i) =>
      ranges.some((r) => bufOffset + i >= r.offset && bufOffset + i < r.offset + r.length) ? 0 : 7
    );
    assert.deepStrictEqual([...buf], expected, `buffer at ${bufOffset}`);
  }
});

Deno.test("coversFully() is true only when one merged range holds the whole span", () => {
  const ranges = [{ offset: 0, length: 100 }, { offset: 200, length: 50 }];
  assert.equal(coversFully(ranges, 0, 100), true);
  assert.equal(coversFully(ranges, 10, 20), true);
  assert.equal(coversFully(ranges, 90, 20), false);
  assert.equal(coversFully(ranges, 200, 50), true);
  assert.equal(coversFully(ranges, 240, 20), false);
  assert.equal(coversFully(ranges, 300, 1), false);
  assert.equal(coversFully([], 0, 1), false);
});
