import assert from "node:assert/strict";
import { describeOperation } from "./appliance_commands.ts";

Deno.test("describeOperation() says bytes cached of total, rate and time left", () => {
  assert.equal(
    describeOperation({
      kind: "prefetch",
      doneBytes: 12 * 1024 * 1024,
      totalBytes: 40 * 1024 * 1024,
      rateBytesPerSecond: 180 * 1024,
      secondsLeft: 160,
    }),
    "prefetch 12.0 MiB of 40.0 MiB, 180.0 KiB/s, 2 min 40 s left",
  );
  assert.equal(
    describeOperation({
      kind: "trace",
      doneBytes: 1024,
      totalBytes: 4096,
      rateBytesPerSecond: 0,
      secondsLeft: null,
    }),
    "trace 1.0 KiB of 4.0 KiB",
  );
});
