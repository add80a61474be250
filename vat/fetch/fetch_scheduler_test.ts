import assert from "node:assert/strict";
import { FetchScheduler } from "./fetch_scheduler.ts";

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => open = resolve);
  return { open, opened };
}

Deno.test("FetchScheduler runs demand at once and holds prefetch back until demand and trace are done", async () => {
  const scheduler = new FetchScheduler({ traceInFlight: 1, backgroundInFlight: 1 });
  const started: string[] = [];
  const demand = gate();
  const trace = gate();
  const d = scheduler.run("demand", async () => {
    started.push("demand");
    await demand.opened;
  });
  const p = scheduler.run("prefetch", () => {
    started.push("prefetch");
    return Promise.resolve();
  });
  const t1 = scheduler.run("trace", async () => {
    started.push("trace1");
    await trace.opened;
  });
  const t2 = scheduler.run("trace", () => {
    started.push("trace2");
    return Promise.resolve();
  });
  const b = scheduler.run("backup", () => {
    started.push("backup");
    return Promise.resolve();
  });
  await Promise.resolve();
  assert.deepEqual(started, ["demand", "trace1"]);
  assert.deepEqual(scheduler.stats().queued, { demand: 0, trace: 1, prefetch: 1, backup: 1 });
  trace.open();
  await t1;
  await t2;
  assert.deepEqual(started, ["demand", "trace1", "trace2"], "prefetch waits for demand");
  demand.open();
  await Promise.all([d, p, b]);
  assert.deepEqual(started, ["demand", "trace1", "trace2", "prefetch", "backup"]);
});

Deno.test("FetchScheduler bounds background requests in flight and keeps their order", async () => {
  const scheduler = new FetchScheduler({ backgroundInFlight: 2 });
  let running = 0;
  let most = 0;
  const order: number[] = [];
  await Promise.all(Array.from({ length: 10 }, (_, i) =>
    scheduler.run("prefetch", async () => {
      order.push(i);
      most = Math.max(most, ++running);
      await new Promise((r) => setTimeout(r, 5));
      running--;
    })));
  assert.equal(most, 2);
  assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

Deno.test("FetchScheduler passes a task's failure to its caller and goes on", async () => {
  const scheduler = new FetchScheduler({ backgroundInFlight: 1 });
  const failed = scheduler.run("prefetch", () => Promise.reject(new Error("link down")));
  const next = scheduler.run("prefetch", () => Promise.resolve(7));
  await assert.rejects(failed, /link down/);
  assert.equal(await next, 7);
  assert.deepEqual(scheduler.stats().inFlight, { demand: 0, trace: 0, prefetch: 0, backup: 0 });
});

Deno.test("FetchScheduler bounds demand requests in flight and shows the ones that wait", async () => {
  const scheduler = new FetchScheduler({ demandInFlight: 2 });
  const release = gate();
  const started: number[] = [];
  const all = Array.from({ length: 5 }, (_, i) =>
    scheduler.run("demand", async () => {
      started.push(i);
      await release.opened;
    }));
  const trace = scheduler.run("trace", () => Promise.resolve());
  await Promise.resolve();
  assert.deepEqual(started, [0, 1]);
  assert.deepEqual(scheduler.stats(), {
    inFlight: { demand: 2, trace: 0, prefetch: 0, backup: 0 },
    queued: { demand: 3, trace: 1, prefetch: 0, backup: 0 },
  });
  release.open();
  await Promise.all([...all, trace]);
  assert.deepEqual(started, [0, 1, 2, 3, 4]);
  assert.deepEqual(scheduler.stats().inFlight, { demand: 0, trace: 0, prefetch: 0, backup: 0 });
});
