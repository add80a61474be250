import assert from "node:assert/strict";
import { IntegrityError, TransientError, UsageError } from "../errors.ts";
import { seededRandom } from "../fault_dice.ts";
import { hashChunk } from "./chunk_codec.ts";
import { Repository } from "./repository.ts";
import { MemoryStore } from "./store_memory.ts";
import { FaultyStore, type StoreFault } from "./store_faulty.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

/** A repository of `count` incompressible 16 KiB chunks in memory. */
async function repositoryOf(count: number) {
  const below = new MemoryStore();
  const repo = await Repository.init(below, { kind: "appliance", chunkSizeBytes: 16 * 1024 });
  const random = seededRandom(11);
  const chunks = [];
  for (let i = 0; i < count; i++) {
    const plain = new Uint8Array(16 * 1024);
    for (let j = 0; j < plain.length; j++) plain[j] = random() * 256;
    const hash = hashChunk(plain);
    await repo.writeChunk(hash, plain);
    chunks.push({ hash, plain });
  }
  return { below, repo, chunks };
}

Deno.test("FaultyStore applies each kind to the calls it fits, reproducibly", async () => {
  const below = new MemoryStore();
  await below.put("a", bytes("abcdefgh"));
  const run = async (seed: number) => {
    const store = new FaultyStore(below, { seed, failRate: 0.5, hangMs: 1 });
    const outcomes: string[] = [];
    for (let i = 0; i < 200; i++) {
      const call = [
        () => store.get("a").then((data) => new TextDecoder().decode(data)),
        () => store.stat("a").then((info) => `stat ${info?.sizeBytes}`),
        () => store.put("a", bytes("abcdefgh")).then(() => "put"),
      ][i % 3];
      outcomes.push(await call().catch((err: Error) => err.message));
    }
    return { outcomes, injected: { ...store.dice.injected } };
  };
  const first = await run(77);
  assert.deepEqual(await run(77), first, "the same seed, the same faults");
  const { outcomes, injected } = first;
  const kinds: StoreFault[] = ["transient", "timeout", "lost-reply", "corrupt", "truncate"];
  for (const kind of kinds) assert.ok(injected[kind] > 0, `some ${kind}`);
  // Bodies are damaged only on reads, replies lost only on writes.
  let damaged = 0;
  for (const [i, outcome] of outcomes.entries()) {
    const injectedHere = outcome.startsWith("injected fault");
    if (i % 3 === 0 && !injectedHere && outcome !== "abcdefgh") damaged++;
    if (i % 3 === 1) assert.ok(outcome === "stat 8" || /\(503\)|timed out/.test(outcome));
    if (/reply .* was lost/.test(outcome)) assert.equal(i % 3, 2, outcome);
    if (i % 3 === 2 && !injectedHere) assert.equal(outcome, "put");
  }
  assert.equal(damaged, injected.corrupt + injected.truncate);
});

Deno.test("FaultyStore timeouts hang for hangMs and fail transiently", async () => {
  const store = new FaultyStore(new MemoryStore(), {
    seed: 1,
    failRate: 1,
    kinds: ["timeout"],
    hangMs: 100,
  });
  const started = performance.now();
  await assert.rejects(store.put("k", bytes("x")), (err: Error) => {
    assert.ok(err instanceof TransientError);
    assert.match(err.message, /put k in memory: timed out after 100 ms/);
    return true;
  });
  assert.ok(performance.now() - started >= 95);
  assert.equal(await store.stat("k").catch(() => "failed"), "failed");
  const closing = new FaultyStore(new MemoryStore(), {
    seed: 1,
    failRate: 1,
    kinds: ["timeout"],
    hangMs: 60_000,
  });
  const hung = assert.rejects(closing.get("k"), /hung until the store was closed/);
  await closing.close();
  await hung;
});

Deno.test("Repository.readChunk() over corrupt and cut bodies: right bytes or IntegrityError, never wrong", async () => {
  const { below, chunks } = await repositoryOf(40);
  const faulty = new FaultyStore(below, {
    seed: 5,
    failRate: 0.6,
    kinds: ["corrupt", "truncate"],
    keys: (key) => key.startsWith("chunks/"),
  });
  const repo = await Repository.open(faulty);
  let right = 0;
  let corrupt = 0;
  for (const { hash, plain } of chunks) {
    try {
      assert.deepEqual(await repo.readChunk(hash), plain);
      right++;
    } catch (err) {
      assert.ok(err instanceof IntegrityError, String(err));
      assert.match(err.message, /is corrupt.*\(read 3 times\)$/);
      corrupt++;
    }
  }
  // With 60% of bodies damaged, three reads cure most chunks (1 - 0.6^3 = 78%).
  assert.equal(right + corrupt, chunks.length);
  assert.ok(right > corrupt, `${right} right, ${corrupt} corrupt`);
  assert.ok(faulty.dice.injected.corrupt > 0 && faulty.dice.injected.truncate > 0);
});

Deno.test("FaultyStore refuses bad options", () => {
  assert.throws(() => new FaultyStore(new MemoryStore(), { seed: 1, failRate: -1 }), UsageError);
  assert.throws(
    () => new FaultyStore(new MemoryStore(), { seed: 1, failRate: 0.1, hangMs: 61_000 }),
    /hang time/,
  );
});
