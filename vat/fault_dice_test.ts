import assert from "node:assert/strict";
import { UsageError } from "./errors.ts";
import { FaultDice, seededRandom } from "./fault_dice.ts";

Deno.test("seededRandom() repeats per seed and spreads evenly over [0, 1)", () => {
  const a = seededRandom(5);
  const b = seededRandom(5);
  const values = Array.from({ length: 10_000 }, () => a());
  assert.deepEqual(Array.from({ length: 10_000 }, () => b()), values);
  assert.notEqual(seededRandom(6)(), values[0]);
  assert.ok(values.every((v) => v >= 0 && v < 1));
  const buckets = new Array(10).fill(0);
  for (const v of values) buckets[Math.floor(v * 10)]++;
  assert.ok(buckets.every((n) => n > 850 && n < 1150), `buckets ${buckets}`);
  assert.ok(seededRandom(0)() > 0, "seed 0 works too");
});

Deno.test("FaultDice fails about failRate of the calls, only with allowed kinds", () => {
  const dice = new FaultDice({ seed: 1, failRate: 0.2 }, ["a", "b", "c"] as const);
  let failed = 0;
  for (let i = 0; i < 10_000; i++) {
    const kind = dice.roll(["a", "b"]);
    if (kind === null) continue;
    failed++;
    assert.notEqual(kind, "c");
  }
  assert.ok(failed > 1800 && failed < 2200, `${failed} of 10000`);
  assert.equal(dice.calls, 10_000);
  assert.equal(dice.total, failed);
  assert.equal(dice.injected.c, 0);
  assert.ok(dice.injected.a > 800 && dice.injected.b > 800);
  // A call allowing none of the configured kinds goes through.
  const only = new FaultDice({ seed: 1, failRate: 1, kinds: ["c"] }, ["a", "b", "c"] as const);
  assert.equal(only.roll(["a"]), null);
  assert.equal(only.roll(), "c");
});

Deno.test("FaultDice refuses bad options", () => {
  const kinds = ["a"] as const;
  assert.throws(() => new FaultDice({ seed: 1, failRate: 2 }, kinds), UsageError);
  assert.throws(() => new FaultDice({ seed: 1, failRate: NaN }, kinds), /fail rate/);
  assert.throws(() => new FaultDice({ seed: 1.5, failRate: 0 }, kinds), /seed/);
  assert.throws(() => new FaultDice({ seed: 1, failRate: 0, kinds: [] }, kinds), /fault kinds/);
});
