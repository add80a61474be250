import assert from "node:assert/strict";
import { AdaptiveRate, RATE_WINDOW } from "./adaptive_rate.ts";

const KiB = 1024;

Deno.test("AdaptiveRate halves under slow requests and recovers when they are fast again", () => {
  const rate = new AdaptiveRate({
    maxBytesPerSecond: 4096 * KiB,
    initialBytesPerSecond: 1024 * KiB,
  });
  for (let i = 0; i < RATE_WINDOW; i++) rate.record(20 + (i % 3));
  const before = rate.bytesPerSecond;
  assert.ok(before > 1024 * KiB, "fast requests raise the rate");
  // The link gets slow: ten times the baseline.
  const changes = [];
  for (let i = 0; i < RATE_WINDOW / 2; i++) changes.push(rate.record(200));
  assert.equal(changes.at(-1), "halved");
  assert.equal(changes.filter((c) => c === "halved").length, 1);
  const slowRate = rate.bytesPerSecond;
  assert.ok(slowRate <= before / 2, `${slowRate} is at most half of ${before}`);
  for (let i = 0; i < RATE_WINDOW / 2; i++) rate.record(200);
  assert.ok(rate.bytesPerSecond <= slowRate / 2, "still slow: halved again");
  // Fast again: doubled (and nudged up) until the cap.
  const low = rate.bytesPerSecond;
  const seen: string[] = [];
  for (let i = 0; i < 10 * RATE_WINDOW; i++) seen.push(rate.record(21));
  assert.ok(seen.includes("doubled"));
  assert.ok(rate.bytesPerSecond > 4 * low);
  assert.equal(rate.bytesPerSecond, 4096 * KiB, "capped by the configured bandwidth");
});

Deno.test("AdaptiveRate nudges on a mixed window and stays within its bounds", () => {
  const rate = new AdaptiveRate({
    maxBytesPerSecond: 1024 * KiB,
    initialBytesPerSecond: 512 * KiB,
    nudgeBytesPerSecond: 8 * KiB,
  });
  rate.record(10);
  assert.equal(rate.bytesPerSecond, 520 * KiB, "a fast request nudges up");
  rate.record(100);
  assert.equal(rate.bytesPerSecond, 512 * KiB, "a slow one nudges down");
  assert.equal(rate.record(20), "kept", "between fast and slow: kept");
  const floor = new AdaptiveRate({ maxBytesPerSecond: 1024 * KiB, minBytesPerSecond: 64 * KiB });
  floor.record(1);
  for (let i = 0; i < 100; i++) floor.record(1000);
  assert.equal(floor.bytesPerSecond, 64 * KiB);
});

Deno.test("AdaptiveRate judges a request by its size: a whole chunk on a slow link is not slow", () => {
  // 1.5 Mbit/s with 40 ms: a nearly empty chunk takes the round trip, a 60 KB one 360 ms.
  const rate = new AdaptiveRate({
    maxBytesPerSecond: 4096 * KiB,
    initialBytesPerSecond: 1024 * KiB,
  });
  const changes = new Set<string>();
  for (let i = 0; i < 4 * RATE_WINDOW; i++) {
    changes.add(i % 2 ? rate.record(42, 200) : rate.record(360 + (i % 5), 60_000));
  }
  assert.ok(!changes.has("halved"), `the link's own speed is not contention: ${[...changes]}`);
  assert.ok(rate.bytesPerSecond >= 1024 * KiB);
  assert.ok(Math.abs(rate.expectedMs(60_000) - 360) < 5, `${rate.expectedMs(60_000)} ms`);
  assert.equal(rate.expectedMs(100), 42, "a small request: the round trip");
  // Another flow shares the link: the same chunks take four times as long.
  const before = rate.bytesPerSecond;
  for (let i = 0; i < RATE_WINDOW / 2; i++) rate.record(1500, 60_000);
  assert.ok(rate.bytesPerSecond <= before / 2, `${rate.bytesPerSecond} after ${before}`);
});

Deno.test("AdaptiveRate.pace() spaces requests at the rate", async () => {
  const rate = new AdaptiveRate({ maxBytesPerSecond: 100 * KiB, initialBytesPerSecond: 100 * KiB });
  const start = performance.now();
  for (let i = 0; i < 6; i++) await rate.pace(5 * KiB);
  // Six requests of 5 KiB at 100 KiB/s: the sixth leaves 5 * 50 ms after the first.
  const elapsed = performance.now() - start;
  assert.ok(elapsed >= 240 && elapsed < 600, `${elapsed} ms`);
  const aborted = new AbortController();
  aborted.abort();
  const t = performance.now();
  await rate.pace(1000 * KiB, aborted.signal);
  await rate.pace(1, aborted.signal);
  assert.ok(performance.now() - t < 50, "an aborted wait returns at once");
});
