import assert from "node:assert/strict";
import {
  IntegrityError,
  NotFoundError,
  PermanentError,
  TransientError,
  UsageError,
} from "../errors.ts";
import { seededRandom } from "../fault_dice.ts";
import { MemoryStore } from "./store_memory.ts";
import { FaultyStore } from "./store_faulty.ts";
import { type RetryEvent, RetryingStore } from "./store_retrying.ts";
import { testStore } from "./store_test_suite.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

// The whole conformance suite, with a third of the calls failing transiently, timing
// out or losing their replies below the retrying wrapper: every retry is harmless.
testStore("RetryingStore over a FaultyStore", () => {
  const faulty = new FaultyStore(new MemoryStore(), {
    seed: 2024,
    failRate: 0.33,
    kinds: ["transient", "timeout", "lost-reply"],
    hangMs: 5,
  });
  const store = new RetryingStore(faulty, { baseDelayMs: 1, maxAttempts: 40 });
  return Promise.resolve({
    store,
    cleanup: () => {
      assert.ok(faulty.dice.total > 0, "faults were injected");
      return Promise.resolve();
    },
  });
});

/** A store whose `get` fails with `errors` in turn, then answers "ok". */
function failing(errors: unknown[]): MemoryStore & { calls: number } {
  const store = Object.assign(new MemoryStore(), { calls: 0 });
  store.get = (key: string) => {
    checkKeyLike(key);
    const err = errors[store.calls++];
    return err === undefined ? Promise.resolve(bytes("ok")) : Promise.reject(err);
  };
  return store;
}

function checkKeyLike(key: string) {
  assert.ok(key.length > 0);
}

Deno.test("RetryingStore retries transient failures with growing, jittered backoff", async () => {
  const errors = Array.from({ length: 5 }, (_, i) => new TransientError(`503 number ${i}`));
  const below = failing(errors);
  const retries: RetryEvent[] = [];
  const store = new RetryingStore(below, {
    baseDelayMs: 10,
    random: seededRandom(1),
    onRetry: (retry) => retries.push(retry),
  });
  assert.equal(new TextDecoder().decode(await store.get("chunks/ab/ab01")), "ok");
  assert.equal(below.calls, 6);
  assert.deepEqual(retries.map((r) => r.attempt), [1, 2, 3, 4, 5]);
  retries.forEach((retry, i) => {
    const cap = 10 * 2 ** i;
    assert.ok(retry.delayMs >= cap / 2 && retry.delayMs <= cap, `retry ${i + 1}: ${retry.delayMs}`);
    if (i > 0) assert.ok(retry.delayMs >= retries[i - 1].delayMs, "never shorter than before");
    assert.equal(retry.what, "get chunks/ab/ab01");
  });
});

Deno.test("RetryingStore gives up after maxAttempts with a message naming the key and cause", async () => {
  const below = failing(Array(10).fill(new TransientError("S3 failed (HTTP 503, SlowDown)")));
  const store = new RetryingStore(below, { baseDelayMs: 1, maxAttempts: 4 });
  await assert.rejects(store.get("versions/2/manifest.json"), (err: Error) => {
    assert.ok(err instanceof TransientError);
    assert.match(
      err.message,
      /^get versions\/2\/manifest.json in memory: failed 4 times over \d+\.\d s and gave up after 4 attempts: S3 failed \(HTTP 503, SlowDown\)$/,
    );
    return true;
  });
  assert.equal(below.calls, 4);
});

Deno.test("RetryingStore stops at its time budget", async () => {
  const below = failing(Array(100).fill(new TransientError("timed out")));
  const store = new RetryingStore(below, { baseDelayMs: 40, maxAttempts: 100, maxTotalMs: 200 });
  const started = performance.now();
  await assert.rejects(store.get("latest"), /gave up after the 0\.2 s retry budget: timed out/);
  assert.ok(performance.now() - started <= 260, "within the budget");
  assert.ok(below.calls >= 3 && below.calls <= 5, `${below.calls} calls`);
});

Deno.test("RetryingStore never retries what a retry cannot cure", async () => {
  for (
    const err of [
      new NotFoundError("gone"),
      new PermanentError("refused (403)"),
      new IntegrityError("corrupt"),
      new UsageError("bad key"),
    ]
  ) {
    const below = failing([err]);
    const store = new RetryingStore(below, { baseDelayMs: 1 });
    await assert.rejects(store.get("k"), (got) => got === err);
    assert.equal(below.calls, 1, `${err.name} is not retried`);
  }
});

Deno.test("RetryingStore waits as long as Retry-After asks, unless that is beyond its budget", async () => {
  const below = failing([new TransientError("429", { retryAfterMs: 300 })]);
  const retries: RetryEvent[] = [];
  const store = new RetryingStore(below, {
    baseDelayMs: 1,
    onRetry: (retry) => retries.push(retry),
  });
  const started = performance.now();
  await store.get("k");
  assert.ok(performance.now() - started >= 295);
  assert.equal(retries[0].delayMs, 300);
  assert.equal(retries[0].serverAsked, true);

  const patient = failing([new TransientError("503", { retryAfterMs: 120_000 })]);
  const hurried = new RetryingStore(patient, { maxTotalMs: 5000 });
  await assert.rejects(hurried.get("k"), (err: Error) => {
    assert.ok(err instanceof TransientError);
    assert.match(err.message, /the server asked to wait 120\.0 s, beyond the 5\.0 s retry budget/);
    assert.equal(err.retryAfterMs, 120_000, "the caller learns how long to wait");
    return true;
  });
  assert.equal(patient.calls, 1);
});

Deno.test("RetryingStore retries a listing only before its first key", async () => {
  const below = new MemoryStore();
  await below.put("chunks/aa/1", bytes("1"));
  await below.put("chunks/aa/2", bytes("2"));
  let lists = 0;
  const list = below.list.bind(below);
  below.list = async function* (prefix: string) {
    if (lists++ === 0) throw new TransientError("listing failed (500)");
    let n = 0;
    for await (const key of list(prefix)) {
      yield key;
      if (++n === 1 && lists === 2) throw new TransientError("connection reset mid-listing");
    }
  };
  const store = new RetryingStore(below, { baseDelayMs: 1 });
  const seen: string[] = [];
  await assert.rejects(async () => {
    for await (const key of store.list("chunks/")) seen.push(key);
  }, /connection reset mid-listing/);
  assert.equal(lists, 2, "retried once, before any key");
  assert.deepEqual(seen, ["chunks/aa/1"]);
  const all: string[] = [];
  for await (const key of store.list("chunks/")) all.push(key);
  assert.deepEqual(all.sort(), ["chunks/aa/1", "chunks/aa/2"]);
});

Deno.test("RetryingStore.close() ends waits for a retry at once", async () => {
  const below = failing([new TransientError("503", { retryAfterMs: 20_000 })]);
  const store = new RetryingStore(below, { maxTotalMs: 60_000 });
  const started = performance.now();
  const pending = assert.rejects(store.get("k"), /waiting to be retried when the store was closed/);
  await new Promise((resolve) => setTimeout(resolve, 20));
  await store.close();
  await pending;
  assert.ok(performance.now() - started < 1000);
});

Deno.test("RetryingStore refuses a bad policy", () => {
  assert.throws(() => new RetryingStore(new MemoryStore(), { maxAttempts: 0 }), UsageError);
  assert.throws(() => new RetryingStore(new MemoryStore(), { maxTotalMs: -1 }), /maxTotalMs/);
});

Deno.test("RetryingStore with onlyAnswered retries a busy server, not an unreachable one", async () => {
  const busy = failing([new TransientError("503 SlowDown", { status: 503 })]);
  const store = new RetryingStore(busy, { baseDelayMs: 1, onlyAnswered: true });
  await store.get("k");
  assert.equal(busy.calls, 2, "a 503 is retried");
  const refused = new TransientError("cannot reach the server: connection refused");
  const unreachable = failing([refused]);
  const quick = new RetryingStore(unreachable, { baseDelayMs: 1, onlyAnswered: true });
  await assert.rejects(quick.get("k"), (err) => err === refused);
  assert.equal(unreachable.calls, 1, "no answer is not retried: the caller's mirror answers");
});
