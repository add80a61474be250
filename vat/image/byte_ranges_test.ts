import assert from "node:assert/strict";
import { mergeRanges, totalLength, zeroRanges } from "./byte_ranges.ts";

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
