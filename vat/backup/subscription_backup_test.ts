import assert from "node:assert/strict";
import { deriveUserKey } from "../auth/user_key.ts";
import { ChunkCache } from "../cache/chunk_cache.ts";
import { ChunkedDisk } from "../disk/chunked_disk.ts";
import { type ChunkSource, CowOverlay } from "../disk/cow_overlay.ts";
import { PermanentError } from "../errors.ts";
import { FileStore } from "../repo/store_file.ts";
import type { Store } from "../repo/store.ts";
import { RateLimiter } from "../rate_limiter.ts";
import { FetchScheduler } from "../fetch/fetch_scheduler.ts";
import { fetchPath } from "../fetch/fetch_path.ts";
import { repositoryTransport } from "../fetch/transport.ts";
import { DataRepository } from "./data_repository.ts";
import { SubscriptionBackup, SubscriptionHeldError } from "./subscription_backup.ts";

const CHUNK = 4096;
const DISK = 16 * CHUNK;
const VM = { memoryMiB: 64, cpus: 1 };
const KEY = deriveUserKey(new Uint8Array(32).fill(7));
const MARKER = new TextEncoder().encode("VAT-BACKUP-TEST-MARKER-3f9c");

/** An all-zero base: a new subscription's empty user disk. */
function zeroBase(): ChunkSource {
  return {
    sizeBytes: DISK,
    readOnly: true,
    preferredBlockBytes: CHUNK,
    readChunk: () => Promise.resolve(null),
    read: (_offset, into) => Promise.resolve(void into.fill(0)),
    write: () => Promise.reject(new Error("read-only")),
    flush: () => Promise.resolve(),
    trim: () => Promise.reject(new Error("read-only")),
    writeZeroes: () => Promise.reject(new Error("read-only")),
    close: () => Promise.resolve(),
  };
}

function block(byte: number, marker = false): Uint8Array {
  const data = new Uint8Array(CHUNK).fill(byte);
  if (marker) data.set(MARKER, 100);
  return data;
}

interface Vat {
  backup: SubscriptionBackup;
  dir: string;
}

async function withRig(
  fn: (rig: {
    root: string;
    repoDir: string;
    store: Store;
    data: DataRepository;
    vat: (id: string, options?: { store?: Store; ttlMs?: number }) => Promise<Vat>;
  }) => Promise<void>,
) {
  const root = await Deno.makeTempDir({ prefix: "vat-backup-test-" });
  const repoDir = `${root}/data`;
  const store = new FileStore(repoDir);
  const data = await DataRepository.open(store, KEY, { create: true });
  const opened: SubscriptionBackup[] = [];
  try {
    await fn({
      root,
      repoDir,
      store,
      data,
      vat: async (id, options = {}) => {
        const dir = `${root}/vat-${id}/backup`;
        const repo = options.store ? await DataRepository.open(options.store, KEY) : data;
        const backup = await SubscriptionBackup.open({
          data: repo,
          dir,
          name: "desk",
          vatId: id,
          limiter: new RateLimiter(0),
          leaseTtlMs: options.ttlMs,
        });
        opened.push(backup);
        return { backup, dir };
      },
    });
  } finally {
    for (const b of opened) b.close();
    await Deno.remove(root, { recursive: true });
  }
}

async function grepDir(dir: string, needle: Uint8Array): Promise<string[]> {
  const hits: string[] = [];
  const text = new TextDecoder("latin1");
  const want = text.decode(needle);
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (text.decode(await Deno.readFile(p)).includes(want)) hits.push(p);
    }
  };
  await walk(dir);
  return hits;
}

async function readVersionDisk(backup: SubscriptionBackup, version: number, cacheDir: string) {
  const repo = backup.repoOf();
  const { manifest } = await repo.readVersion(version);
  const index = await repo.readDiskIndex(manifest.disks.user.index);
  const cache = await ChunkCache.open({
    dir: cacheDir,
    budgetBytes: 1 << 24,
    hashOf: (d) => repo.codec.nameOf(d),
  });
  try {
    const disk = new ChunkedDisk(
      index,
      fetchPath({ cache, transport: repositoryTransport(repo) }),
    );
    const out = new Uint8Array(DISK);
    await disk.read(0, out);
    return out;
  } finally {
    await cache.close();
  }
}

Deno.test("SubscriptionBackup uploads a snapshot that a fresh VAT restores; the repository holds no plaintext", async () => {
  await withRig(async ({ root, repoDir, vat }) => {
    const a = await vat("a");
    const plan = await a.backup.prepareStart({ hasDisk: false, dirty: false });
    assert.equal(plan.base, null);
    const overlay = await CowOverlay.open({ base: zeroBase(), path: `${root}/a.overlay` });
    await overlay.write(3 * CHUNK, block(0x11, true));
    await overlay.write(9 * CHUNK, block(0x22));
    const queued = await a.backup.snapshot(overlay, "stop", VM);
    assert.equal(queued?.changedBytes, 2 * CHUNK);
    assert.equal(a.backup.status(overlay.dirtyBytes()).pendingBytes > 0, true);
    await a.backup.upload();
    assert.equal(a.backup.status(overlay.dirtyBytes()).pendingBytes, 0);
    assert.equal(a.backup.status(0).lastVersion, 1);
    assert.deepEqual(await grepDir(repoDir, MARKER), []);
    await a.backup.releaseIfIdle();
    await overlay.close();

    const b = await vat("b");
    const restored = await b.backup.prepareStart({ hasDisk: false, dirty: false });
    assert.deepEqual(restored.base, { series: "desk", version: 1 });
    assert.equal(restored.discardOverlay, true);
    const disk = await readVersionDisk(b.backup, 1, `${root}/cache-b`);
    assert.deepEqual(disk.subarray(3 * CHUNK, 4 * CHUNK), block(0x11, true));
    assert.deepEqual(disk.subarray(9 * CHUNK, 10 * CHUNK), block(0x22));
    assert.equal(disk.subarray(0, 3 * CHUNK).every((x) => x === 0), true);
  });
});

Deno.test("SubscriptionBackup snapshot is crash-consistent while the guest writes (copy-before-write)", async () => {
  await withRig(async ({ root, vat }) => {
    const a = await vat("a");
    await a.backup.prepareStart({ hasDisk: false, dirty: false });
    const overlay = await CowOverlay.open({ base: zeroBase(), path: `${root}/a.overlay` });
    for (let i = 0; i < 16; i++) await overlay.write(i * CHUNK, block(i + 1));
    // Writes race the snapshot: every chunk is rewritten while it is being taken.
    const snap = a.backup.snapshot(overlay, "periodic", VM);
    const writes = Array.from({ length: 16 }, (_, i) => overlay.write(i * CHUNK, block(0xf0 + i)));
    await Promise.all([snap, ...writes]);
    await a.backup.upload();
    const v1 = await readVersionDisk(a.backup, 1, `${root}/cache-1`);
    for (let i = 0; i < 16; i++) {
      assert.deepEqual(v1.subarray(i * CHUNK, (i + 1) * CHUNK), block(i + 1), `chunk ${i}`);
    }
    // The racing writes are the next snapshot's.
    assert.equal(overlay.dirtyChunks().length, 16);
    await a.backup.snapshot(overlay, "stop", VM);
    await a.backup.upload();
    const v2 = await readVersionDisk(a.backup, 2, `${root}/cache-2`);
    for (let i = 0; i < 16; i++) {
      assert.deepEqual(v2.subarray(i * CHUNK, (i + 1) * CHUNK), block(0xf0 + i));
    }
    await overlay.close();
  });
});

/** A store whose puts fail after `budget` of them, as a killed uploader would stop. */
function failingAfter(inner: Store, budget: { left: number }): Store {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === "put" || prop === "create") {
        return (key: string, data: Uint8Array) => {
          if (budget.left-- <= 0) return Promise.reject(new Error("link down"));
          return (target[prop] as (k: string, d: Uint8Array) => Promise<unknown>)(key, data);
        };
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("SubscriptionBackup resumes an interrupted upload and never commits a snapshot twice", async () => {
  await withRig(async ({ root, repoDir, vat }) => {
    const budget = { left: 1_000_000 };
    const flaky = failingAfter(new FileStore(repoDir), budget);
    const a = await vat("a", { store: flaky });
    await a.backup.prepareStart({ hasDisk: false, dirty: false });
    const overlay = await CowOverlay.open({ base: zeroBase(), path: `${root}/a.overlay` });
    for (let i = 0; i < 12; i++) await overlay.write(i * CHUNK, block(0x40 + i));
    await a.backup.snapshot(overlay, "stop", VM);
    budget.left = 5; // the lease and a few chunks, then the link goes
    await assert.rejects(a.backup.upload(), /link down/);
    assert.match(a.backup.status(0).error ?? "", /link down/);
    budget.left = 1_000_000;
    await a.backup.upload();
    assert.equal(a.backup.status(0).lastVersion, 1);
    assert.equal(a.backup.status(0).error, null);
    await overlay.close();
    // A crash right after the commit: the outbox still has the snapshot queued (its
    // state as it was, copied back). The restarted upload finds its commit.
    const overlay2 = await CowOverlay.open({ base: zeroBase(), path: `${root}/b.overlay` });
    for (let i = 0; i < 3; i++) await overlay2.write(i * CHUNK, block(0x60 + i));
    const b = await vat("b");
    await b.backup.prepareStart({ hasDisk: true, dirty: true }, { fork: true });
    await b.backup.snapshot(overlay2, "stop", VM);
    const snapshotCopy = `${root}/outbox-copy`;
    await Deno.mkdir(snapshotCopy);
    for await (const e of Deno.readDir(b.dir)) {
      if (e.isFile) await Deno.copyFile(`${b.dir}/${e.name}`, `${snapshotCopy}/${e.name}`);
    }
    await b.backup.upload();
    const series = b.backup.series;
    b.backup.close();
    for await (const e of Deno.readDir(snapshotCopy)) {
      await Deno.copyFile(`${snapshotCopy}/${e.name}`, `${b.dir}/${e.name}`);
    }
    const again = await vat("b");
    assert.equal(again.backup.outbox.queued().length, 1);
    await again.backup.upload();
    assert.equal(again.backup.series, series);
    assert.deepEqual(await again.backup.repoOf().listVersions(), [1]);
    assert.equal(again.backup.outbox.queued().length, 0);
    await overlay2.close();
  });
});

Deno.test("SubscriptionBackup: one VAT holds the lease; a stale lease heals; a taken-over VAT forks", async () => {
  await withRig(async ({ root, vat }) => {
    const a = await vat("a", { ttlMs: 400 });
    const b = await vat("b", { ttlMs: 400 });
    await a.backup.prepareStart({ hasDisk: false, dirty: false });
    await assert.rejects(
      b.backup.prepareStart({ hasDisk: false, dirty: false }),
      (err) => err instanceof SubscriptionHeldError && /in use on another VAT/.test(err.message),
    );
    const overlayA = await CowOverlay.open({ base: zeroBase(), path: `${root}/a.overlay` });
    await overlayA.write(0, block(0xaa));
    await a.backup.snapshot(overlayA, "periodic", VM);
    await a.backup.upload();
    // A goes silent; after the time to live B takes over without anyone unlocking.
    await new Promise((r) => setTimeout(r, 900));
    const planB = await b.backup.prepareStart({ hasDisk: false, dirty: false });
    assert.deepEqual(planB.base, { series: "desk", version: 1 });
    const overlayB = await CowOverlay.open({ base: zeroBase(), path: `${root}/b.overlay` });
    await overlayB.write(CHUNK, block(0xbb));
    await b.backup.snapshot(overlayB, "stop", VM);
    await b.backup.upload();
    assert.deepEqual(await b.backup.repoOf().listVersions(), [1, 2]);
    // A comes back with unsent changes: they go to a fork, B's versions stay.
    await overlayA.write(2 * CHUNK, block(0xcc));
    await a.backup.snapshot(overlayA, "stop", VM);
    await a.backup.upload();
    await a.backup.upload();
    const state = a.backup.outbox.state();
    assert.match(state.series, /^desk-fork-/);
    assert.match(state.forkNote ?? "", /taken over|another VAT/);
    assert.deepEqual(await b.backup.repoOf().listVersions(), [1, 2]);
    assert.deepEqual(await a.backup.repoOf().listVersions(), [1]);
    const fork = await readVersionDisk(a.backup, 1, `${root}/cache-fork`);
    assert.deepEqual(fork.subarray(0, CHUNK), block(0xaa));
    assert.deepEqual(fork.subarray(2 * CHUNK, 3 * CHUNK), block(0xcc));
    await overlayA.close();
    await overlayB.close();
  });
});

Deno.test("SubscriptionBackup undo commits an old version again; nothing is deleted", async () => {
  await withRig(async ({ root, vat }) => {
    const a = await vat("a");
    await a.backup.prepareStart({ hasDisk: false, dirty: false });
    const overlay = await CowOverlay.open({ base: zeroBase(), path: `${root}/a.overlay` });
    await overlay.write(0, block(1));
    await a.backup.snapshot(overlay, "periodic", VM);
    await overlay.write(0, block(2));
    await a.backup.snapshot(overlay, "stop", VM);
    await a.backup.upload();
    await overlay.close();
    assert.deepEqual(await a.backup.queueUndo(1), { series: "desk", version: 1 });
    await a.backup.upload();
    const list = await a.backup.list();
    assert.deepEqual(list.map((e) => [e.version, e.reason, e.undoneTo]), [
      [3, "undo", 1],
      [2, "stop", null],
      [1, "periodic", null],
    ]);
    const v3 = await readVersionDisk(a.backup, 3, `${root}/cache-3`);
    assert.deepEqual(v3.subarray(0, CHUNK), block(1));
  });
});

Deno.test("SubscriptionBackup collapses queued snapshots when the outbox outgrows the disk", async () => {
  await withRig(async ({ root, vat }) => {
    const a = await vat("a");
    await a.backup.prepareStart({ hasDisk: false, dirty: false });
    const overlay = await CowOverlay.open({ base: zeroBase(), path: `${root}/a.overlay` });
    // Offline: nothing uploads; every round rewrites the whole disk with new content.
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 16; i++) {
        const data = new Uint8Array(CHUNK);
        crypto.getRandomValues(data.subarray(0, 1024));
        await overlay.write(i * CHUNK, data);
      }
      await a.backup.snapshot(overlay, "periodic", VM);
      assert.ok(a.backup.outbox.pendingBytes() <= 2 * DISK + 16 * 1024);
    }
    assert.ok(a.backup.outbox.queued().length < 4);
    await a.backup.upload();
    const versions = await a.backup.repoOf().listVersions();
    const disk = await readVersionDisk(a.backup, versions[versions.length - 1], `${root}/c`);
    const local = new Uint8Array(DISK);
    await overlay.read(0, local);
    assert.deepEqual(disk, local);
    await overlay.close();
  });
});

Deno.test("DataRepository refuses a wrong key and writes nothing", async () => {
  await withRig(async ({ store, repoDir }) => {
    const before = await grepDir(repoDir, new Uint8Array(0));
    const other = deriveUserKey(new Uint8Array(32).fill(9));
    await assert.rejects(
      DataRepository.open(store, other, { create: true }),
      (err) =>
        err instanceof PermanentError && /does not open the data repository/.test(err.message),
    );
    assert.deepEqual(await grepDir(repoDir, new Uint8Array(0)), before);
  });
});

Deno.test("SubscriptionBackup upload waits while demand fetches wait, and keeps to its bandwidth cap", async () => {
  await withRig(async ({ root, data }) => {
    // A demand read on the link for 600 ms: backup requests wait for it.
    const scheduler = new FetchScheduler();
    const puts: number[] = [];
    const backup = await SubscriptionBackup.open({
      data,
      dir: `${root}/vat-y/backup`,
      name: "desk",
      vatId: "y",
      limiter: new RateLimiter(16 * 1024),
      schedule: (task) =>
        scheduler.run("backup", () => {
          puts.push(performance.now());
          return task();
        }),
    });
    try {
      await backup.prepareStart({ hasDisk: false, dirty: false });
      const overlay = await CowOverlay.open({ base: zeroBase(), path: `${root}/y.overlay` });
      for (let i = 0; i < 16; i++) {
        const noise = new Uint8Array(CHUNK);
        crypto.getRandomValues(noise);
        await overlay.write(i * CHUNK, noise);
      }
      await backup.snapshot(overlay, "stop", VM);
      let demandEnded = Infinity;
      const demand = scheduler.run("demand", () =>
        new Promise<void>((r) =>
          setTimeout(() => {
            demandEnded = performance.now();
            r();
          }, 600)
        ));
      const started = performance.now();
      await backup.upload();
      await demand;
      const elapsed = performance.now() - started;
      assert.equal(puts.length, 16);
      assert.ok(puts[0] >= demandEnded, "a chunk went up while a demand read was on the link");
      // 64 KiB of sealed chunks at 16 KiB/s after a 16 KiB burst.
      assert.ok(elapsed >= 2800, `upload faster than its cap allows: ${elapsed} ms`);
      assert.ok(elapsed < 8000, `the upload took ${elapsed} ms`);
      await overlay.close();
    } finally {
      backup.close();
    }
  });
});

Deno.test("SubscriptionBackup: a VAT with nothing unsent follows versions another VAT wrote, dropping its old overlay", async () => {
  await withRig(async ({ root, vat }) => {
    const a = await vat("a");
    await a.backup.prepareStart({ hasDisk: false, dirty: false });
    const pathA = `${root}/a.overlay`;
    const overlayA = await CowOverlay.open({ base: zeroBase(), path: pathA });
    await overlayA.write(0, block(0x31));
    await a.backup.snapshot(overlayA, "stop", VM);
    await a.backup.upload();
    await a.backup.releaseIfIdle();
    await overlayA.close();

    const b = await vat("b");
    assert.deepEqual((await b.backup.prepareStart({ hasDisk: false, dirty: false })).base, {
      series: "desk",
      version: 1,
    });
    const overlayB = await CowOverlay.open({ base: zeroBase(), path: `${root}/b.overlay` });
    await overlayB.write(CHUNK, block(0x32));
    await b.backup.snapshot(overlayB, "stop", VM);
    await b.backup.upload();
    await b.backup.releaseIfIdle();
    await overlayB.close();

    const plan = await a.backup.prepareStart({ hasDisk: true, dirty: false, overlayPath: pathA });
    assert.deepEqual(plan.base, { series: "desk", version: 2 });
    assert.equal(plan.discardOverlay, true);
    assert.equal(a.backup.series, "desk", "no fork: nothing was unsent");
    for (const suffix of ["", ".map", ".dirty"]) {
      await assert.rejects(Deno.stat(pathA + suffix), Deno.errors.NotFound);
    }
  });
});
