import assert from "node:assert/strict";
import { announce, diedOnThisHost, listActivities, removeAnnouncement } from "./activity.ts";
import { MemoryStore } from "./store_memory.ts";

/** An announcement as `announce` writes it, with `changes` applied to its body. */
async function announced(store: MemoryStore, changes: Record<string, unknown>) {
  const mine = await announce(store, "gc");
  const body = JSON.parse(new TextDecoder().decode(await store.get(mine.key)));
  await store.put(mine.key, new TextEncoder().encode(JSON.stringify({ ...body, ...changes })));
  const [activity] = await listActivities(store, Date.now());
  return { mine, activity };
}

/** A pid no process has now: past the kernel's highest. */
function deadPid(): number {
  return Number(Deno.readTextFileSync("/proc/sys/kernel/pid_max").trim()) + 1;
}

Deno.test("diedOnThisHost() is true for a process of this machine that is gone", async () => {
  const store = new MemoryStore();
  const { mine, activity } = await announced(store, { pid: deadPid() });
  assert.equal(await diedOnThisHost(store, activity), true);
  await removeAnnouncement(store, activity.key);
  assert.deepEqual(await listActivities(store, Date.now()), []);
  await mine.end();
});

Deno.test("diedOnThisHost() is false for a live process, another host, boot or pid namespace", async () => {
  const store = new MemoryStore();
  for (
    const changes of [
      {},
      { pid: 1 },
      { pid: deadPid(), host: "elsewhere" },
      { pid: deadPid(), bootId: "00000000-0000-0000-0000-000000000000" },
      { pid: deadPid(), pidNamespace: "pid:[1]" },
      { pid: "12" },
    ]
  ) {
    const { mine, activity } = await announced(store, changes);
    assert.equal(await diedOnThisHost(store, activity), false, JSON.stringify(changes));
    await mine.end();
  }
});

Deno.test("diedOnThisHost() is false for an announcement without an identity", async () => {
  const store = new MemoryStore();
  const mine = await announce(store, "publish");
  await store.put(mine.key, new TextEncoder().encode("not json"));
  const [activity] = await listActivities(store, Date.now());
  assert.equal(await diedOnThisHost(store, activity), false);
  await mine.end();
});
