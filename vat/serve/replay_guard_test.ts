import assert from "node:assert/strict";
import { ReplayGuard } from "./replay_guard.ts";

Deno.test("ReplayGuard refuses a request seen within the window and forgets it after", () => {
  const guard = new ReplayGuard();
  assert.equal(guard.remember("k", "n1", 0), true);
  assert.equal(guard.remember("k", "n1", 1000), false);
  assert.equal(guard.remember("other", "n1", 1000), true);
  assert.equal(guard.remember("k", "n2", 1000), true);
  assert.equal(guard.remember("k", "n3", 11 * 60_000), true);
  assert.equal(guard.size, 1);
  assert.equal(guard.remember("k", "n1", 11 * 60_000), true);
});
