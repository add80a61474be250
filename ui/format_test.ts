import assert from "node:assert/strict";
import { formatSeconds, percent } from "./format.ts";

Deno.test("formatSeconds() shows seconds, minutes and hours", () => {
  assert.equal(formatSeconds(0), "0 s");
  assert.equal(formatSeconds(59.4), "59 s");
  assert.equal(formatSeconds(245), "4 min 5 s");
  assert.equal(formatSeconds(7800), "2 h 10 min");
});

Deno.test("percent() rounds down, so only a finished whole shows 100", () => {
  assert.equal(percent(999, 1000), 99);
  assert.equal(percent(1000, 1000), 100);
  assert.equal(percent(0, 0), 100);
});
