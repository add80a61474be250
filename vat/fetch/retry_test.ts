import assert from "node:assert/strict";
import { NotFoundError, TransientError } from "../errors.ts";
import { retrying } from "./retry.ts";

const HASH = new Uint8Array(32).fill(0xab);
const DATA = new Uint8Array([1, 2, 3]);

Deno.test("retrying() retries transient failures with growing delays until one succeeds", async () => {
  const at: number[] = [];
  const started = performance.now();
  const flaky = retrying(() => {
    at.push(performance.now() - started);
    return at.length < 3
      ? Promise.reject(new TransientError("connection reset"))
      : Promise.resolve(DATA);
  });
  assert.deepEqual(await flaky(HASH), DATA);
  assert.equal(at.length, 3);
  assert.ok(at[1] - at[0] >= 90, `first backoff ~100 ms, was ${at[1] - at[0]}`);
  assert.ok(at[2] - at[1] >= 190, `second backoff ~200 ms, was ${at[2] - at[1]}`);
});

Deno.test("retrying() gives up within its window with a message naming the chunk", async () => {
  const lines: string[] = [];
  let attempts = 0;
  const down = retrying(() => {
    attempts++;
    return Promise.reject(new TransientError("repository unreachable"));
  }, { retryForMs: 1000, log: (l) => lines.push(l) });
  const started = performance.now();
  await assert.rejects(
    down(HASH),
    (err: Error) =>
      err instanceof TransientError &&
      err.message === `fetching chunk ${"ab".repeat(32)} failed: repository unreachable`,
  );
  assert.ok(performance.now() - started < 1500, "gives up within the retry window");
  assert.ok(attempts >= 3 && attempts <= 5, `100+200+400 ms of backoff: ${attempts} attempts`);
  assert.equal(lines.length, 1);
  assert.match(lines[0], /^fetch: fetching chunk (ab){32} failed: repository unreachable$/);
});

Deno.test("retrying() fails at once on a permanent error, and keeps its class", async () => {
  let attempts = 0;
  const missing = retrying(() => {
    attempts++;
    return Promise.reject(new NotFoundError("chunk abab is missing"));
  }, { log: () => {} });
  await assert.rejects(missing(HASH), NotFoundError);
  assert.equal(attempts, 1);
});
