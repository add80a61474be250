import assert from "node:assert/strict";
import { LoginThrottle } from "./login_throttle.ts";

Deno.test("LoginThrottle doubles the wait per failure up to a minute; a success resets", () => {
  let now = 0;
  const throttle = new LoginThrottle({ nowMs: () => now });
  const keys = ["user:d:alice", "client:1.2.3.4"];
  assert.equal(throttle.waitMs(keys), 0);
  const waits: number[] = [];
  for (let i = 0; i < 9; i++) {
    throttle.failed(keys);
    waits.push(throttle.waitMs(keys));
  }
  assert.deepEqual(waits, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
  now += 30_000;
  assert.equal(throttle.waitMs(["user:d:alice"]), 30_000);
  // The client's failures slow another user from that client too.
  assert.equal(throttle.waitMs(["user:d:bob", "client:1.2.3.4"]), 30_000);
  throttle.succeeded(["user:d:alice"]);
  assert.equal(throttle.waitMs(["user:d:alice"]), 0);
  assert.equal(throttle.waitMs(["client:1.2.3.4"]), 30_000);
});
