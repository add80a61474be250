import assert from "node:assert/strict";
import { ReplayGuard } from "./replay_guard.ts";

Deno.test("ReplayGuard refuses a request seen within the window and forgets it after", () => {
  const guard = new ReplayGuard();
  assert.equal(guard.remember("k", "n1", 0), "new");
  assert.equal(guard.remember("k", "n1", 1000), "replay");
  assert.equal(guard.remember("other", "n1", 1000), "new");
  assert.equal(guard.remember("k", "n2", 1000), "new");
  assert.equal(guard.remember("k", "n3", 11 * 60_000), "new");
  assert.equal(guard.size, 1);
  assert.equal(guard.remember("k", "n1", 11 * 60_000), "new");
  guard.close();
});

Deno.test("ReplayGuard remembers across a restart when given a file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-replay-" });
  try {
    const first = new ReplayGuard(`${dir}/replay.sqlite`);
    assert.equal(first.remember("k", "n1", 1000), "new");
    first.close();
    const second = new ReplayGuard(`${dir}/replay.sqlite`);
    assert.equal(second.remember("k", "n1", 2000), "replay");
    assert.equal(second.size, 1);
    second.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ReplayGuard refuses new requests when full instead of forgetting early", () => {
  const guard = new ReplayGuard(undefined, { maxEntries: 2 });
  assert.equal(guard.remember("k", "n1", 0), "new");
  assert.equal(guard.remember("k", "n2", 0), "new");
  assert.equal(guard.remember("k", "n3", 0), "full");
  assert.equal(guard.remember("k", "n1", 0), "replay");
  assert.equal(guard.remember("k", "n3", 11 * 60_000), "new");
  guard.close();
});
