import assert from "node:assert/strict";
import { describeUpdate, formatSeconds, percent } from "./format.ts";

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

Deno.test("describeUpdate() says what runs, what downloads or waits, and what failed", () => {
  const base = {
    repo: "r",
    key: "k",
    runningVersion: "0.3.0",
    runningSlot: "B" as const,
    state: "idle" as const,
    install: { dir: "/i", current: null, next: null, failed: null },
    available: null,
    progress: null,
    lastCheckAt: null,
    lastError: null,
    lastApply: null,
  };
  assert.equal(describeUpdate(base), "vat 0.3.0");
  assert.equal(
    describeUpdate({
      ...base,
      install: {
        ...base.install,
        next: {
          slot: "C",
          attemptsLeft: 3,
          release: {
            release: 4,
            vatVersion: "0.4.0",
            kind: "bundle",
            repoId: "x",
            installedAt: "t",
          },
        },
      },
    }),
    "vat 0.3.0 · vat 0.4.0 is ready: it starts when no appliance runs",
  );
  assert.equal(
    describeUpdate({ ...base, state: "error", lastError: "release 5 is refused" }),
    "vat 0.3.0 · update failed: release 5 is refused",
  );
});
