import assert from "node:assert/strict";
import { formatBytes, ProgressMeter } from "./progress.ts";

Deno.test("formatBytes() shows bytes for people", () => {
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(3 * 1024 ** 3), "3.0 GiB");
});

Deno.test("ProgressMeter.progress() shows the bytes done and no time left before a rate", () => {
  const meter = new ProgressMeter("publish", 1000, 100);
  meter.advance(200);
  assert.deepEqual(meter.progress(), {
    kind: "publish",
    doneBytes: 300,
    totalBytes: 1000,
    rateBytesPerSecond: 0,
    secondsLeft: null,
  });
});

Deno.test("ProgressMeter.moveTo() follows a listener's totals, also backwards", () => {
  const meter = new ProgressMeter("publish", 1000);
  meter.moveTo(400);
  assert.equal(meter.progress().doneBytes, 400);
  meter.moveTo(600);
  assert.equal(meter.progress().doneBytes, 600);
  // A second pass starts again from 0.
  meter.moveTo(0);
  assert.equal(meter.progress().doneBytes, 0);
  meter.moveTo(250);
  assert.equal(meter.progress().doneBytes, 250);
});
