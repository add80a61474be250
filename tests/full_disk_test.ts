/**
 * A full disk under each part of the VAT that writes locally, on a real small tmpfs
 * (root only: mounted by the test, unmounted in `finally`) filled to the last page:
 * the chunk cache serves what it fetched without caching it and says so once; the
 * state database, the backup outbox and the copy-on-write overlay fail the write with a
 * `PermanentError` that names the disk, and keep what they had; an overlay write
 * reaches an NBD client (qemu-io) as ENOSPC; and the daemon keeps answering its API.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { ChunkCache } from "../vat/cache/chunk_cache.ts";
import { hashChunk, toHex } from "../vat/repo/chunk_codec.ts";
import { StateDb } from "../vat/appliance/state_db.ts";
import { Outbox } from "../vat/backup/outbox.ts";
import { DiskIndex } from "../vat/repo/disk_index.ts";
import { type ChunkSource, CowOverlay } from "../vat/disk/cow_overlay.ts";
import { deviceErrorCode } from "../vat/nbd/nbd_errors.ts";
import { ENOSPC } from "../vat/nbd/nbd_protocol.ts";
import { PermanentError } from "../vat/errors.ts";
import { serveNbd } from "../vat/nbd/nbd_server.ts";
import { writeImage } from "./helpers/images.ts";
import { startVat } from "./helpers/processes.ts";
import { runVat, vatOk } from "./helpers/vat_cli.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** Why a tmpfs cannot be mounted here, or null when it can. */
const CANNOT_MOUNT = await _mountProblem();
if (CANNOT_MOUNT) console.log(`full-disk tests skipped: ${CANNOT_MOUNT}`);

/** A small filesystem that the test can fill to the last byte and free again. */
interface SmallDisk {
  dir: string;
  /** Fills the disk with filler files until the kernel says ENOSPC. */
  fill(): Promise<void>;
  /** Removes the filler. */
  free(): Promise<void>;
}

async function withSmallDisk(sizeBytes: number, fn: (disk: SmallDisk) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vat-full-disk-" });
  await _mount(dir, sizeBytes);
  let fillers = 0;
  const disk: SmallDisk = {
    dir,
    async fill() {
      // Big pieces first, then page by page, so that not one page is left.
      for (const piece of [256 * KiB, 4 * KiB]) {
        for (;;) {
          const path = `${dir}/filler-${fillers++}`;
          try {
            await Deno.writeFile(path, new Uint8Array(piece).fill(1));
          } catch (err) {
            if ((err as { code?: string }).code !== "ENOSPC") throw err;
            break;
          }
        }
      }
    },
    async free() {
      for (let i = 0; i < fillers; i++) await Deno.remove(`${dir}/filler-${i}`).catch(() => {});
      fillers = 0;
    },
  };
  try {
    await fn(disk);
  } finally {
    const out = await new Deno.Command("umount", { args: [dir], stderr: "piped" }).output();
    if (!out.success) {
      // Something still holds a file open; detach it so the directory can go.
      await new Deno.Command("umount", { args: ["-l", dir] }).output();
    }
    await Deno.remove(dir, { recursive: true });
  }
}

async function _mount(dir: string, sizeBytes: number): Promise<void> {
  const out = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${sizeBytes}`, "tmpfs", dir],
    stderr: "piped",
  }).output();
  if (!out.success) {
    await Deno.remove(dir);
    throw new Error(`mount -t tmpfs failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

async function _mountProblem(): Promise<string | null> {
  if (Deno.uid() !== 0) return "mounting a tmpfs needs root";
  const dir = await Deno.makeTempDir({ prefix: "vat-full-disk-probe-" });
  try {
    await _mount(dir, MiB);
    await new Deno.Command("umount", { args: [dir] }).output();
    await Deno.remove(dir);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Deterministic bytes that differ per seed. */
function _bytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Runs `fn` with console.error's lines collected (and not printed). */
async function _collectingErrors(fn: (lines: string[]) => Promise<void>) {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => lines.push(args.map(String).join(" "));
  try {
    await fn(lines);
  } finally {
    console.error = original;
  }
}

function _integrityCheck(path: string): string {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return (db.prepare("PRAGMA integrity_check").get() as { integrity_check: string })
      .integrity_check;
  } finally {
    db.close();
  }
}

Deno.test({
  name: "ChunkCache on a full disk serves fetched chunks uncached, says so once, then resumes",
  ignore: CANNOT_MOUNT !== null,
  fn: () =>
    withSmallDisk(8 * MiB, async (disk) => {
      const chunks = Array.from({ length: 120 }, (_, i) => _bytes(64 * KiB, i + 1));
      const hashes = chunks.map((c) => hashChunk(c));
      let fetches = 0;
      const fetch = (hash: Uint8Array) => {
        fetches++;
        const i = hashes.findIndex((h) => Buffer.from(h).equals(hash));
        return Promise.resolve(chunks[i].slice());
      };
      const dir = `${disk.dir}/cache`;
      const cached = new Set<number>();
      await _collectingErrors(async (log) => {
        const cache = await ChunkCache.open({ dir, budgetBytes: 1024 * MiB });
        try {
          for (let i = 0; i < 20; i++) {
            assert.deepEqual(await cache.get(hashes[i], fetch), chunks[i]);
            cached.add(i);
          }
          await disk.fill();
          fetches = 0;
          for (let i = 20; i < 60; i++) {
            assert.deepEqual(await cache.get(hashes[i], fetch), chunks[i], `chunk ${i}, disk full`);
          }
          assert.equal(fetches, 40);
          assert.equal(cache.stats().diskFull, true);
          // Not cached: asked again, they are fetched again (and still right).
          for (let i = 20; i < 25; i++) {
            assert.deepEqual(await cache.get(hashes[i], fetch), chunks[i]);
          }
          assert.equal(fetches, 45);
          // What was cached before the disk filled is still served from the cache.
          for (let i = 0; i < 20; i++) {
            assert.deepEqual(await cache.get(hashes[i], fetch), chunks[i]);
          }
          assert.equal(fetches, 45);
          const full = log.filter((l) => l.startsWith("cache disk full"));
          assert.equal(full.length, 1, `logged once, not per chunk:\n${log.join("\n")}`);
          assert.match(full[0], /the disk of .*\/cache has no space left.*served but not cached/);

          await disk.free();
          for (let i = 60; i < 70; i++) {
            assert.deepEqual(await cache.get(hashes[i], fetch), chunks[i]);
            cached.add(i);
          }
          assert.equal(cache.stats().diskFull, false);
          assert.ok(log.some((l) => /has space again; caching resumes/.test(l)), log.join("\n"));
          fetches = 0;
          for (let i = 60; i < 70; i++) {
            assert.deepEqual(await cache.get(hashes[i], fetch), chunks[i]);
          }
          assert.equal(fetches, 0, "cached again once there was space");
        } finally {
          await cache.close();
        }
      });

      // Reopened, the index names exactly the chunks cached, and every one verifies.
      assert.equal(_integrityCheck(`${dir}/index.sqlite`), "ok");
      const reopened = await ChunkCache.open({ dir, budgetBytes: 1024 * MiB });
      try {
        assert.equal(reopened.stats().chunks, cached.size);
        const refuse = () => Promise.reject(new PermanentError("no fetch expected"));
        for (const i of cached) assert.deepEqual(await reopened.get(hashes[i], refuse), chunks[i]);
        for (let i = 20; i < 60; i++) assert.equal(reopened.has(hashes[i]), false);
        assert.equal(reopened.stats().corruptDropped, 0);
      } finally {
        await reopened.close();
      }
    }),
});

Deno.test({
  name: "ChunkCache at its budget on a full disk evicts into freed slots or serves uncached",
  ignore: CANNOT_MOUNT !== null,
  fn: () =>
    withSmallDisk(8 * MiB, async (disk) => {
      const chunks = Array.from({ length: 60 }, (_, i) => _bytes(64 * KiB, 1000 + i));
      const hashes = chunks.map((c) => hashChunk(c));
      const fetch = (hash: Uint8Array) =>
        Promise.resolve(chunks[hashes.findIndex((h) => Buffer.from(h).equals(hash))].slice());
      const dir = `${disk.dir}/cache`;
      const budgetBytes = 16 * 64 * KiB;
      await _collectingErrors(async () => {
        const cache = await ChunkCache.open({ dir, budgetBytes });
        try {
          for (let i = 0; i < 16; i++) await cache.get(hashes[i], fetch);
          await disk.fill();
          // Each new chunk evicts an old one and may reuse its slot (no new space), or,
          // when the index cannot grow, is served uncached: right either way.
          for (let i = 16; i < 60; i++) {
            assert.deepEqual(await cache.get(hashes[i], fetch), chunks[i]);
          }
          assert.ok(cache.stats().usedBytes <= budgetBytes);
        } finally {
          await disk.free();
          await cache.close();
        }
      });
      assert.equal(_integrityCheck(`${dir}/index.sqlite`), "ok");
      const reopened = await ChunkCache.open({ dir, budgetBytes });
      try {
        const refuse = () => Promise.reject(new PermanentError("no fetch expected"));
        let held = 0;
        for (let i = 0; i < 60; i++) {
          if (!reopened.has(hashes[i])) continue;
          held++;
          assert.deepEqual(await reopened.get(hashes[i], refuse), chunks[i], `chunk ${i}`);
        }
        assert.equal(held, reopened.stats().chunks);
        assert.ok(held > 0 && held <= 16, `${held} chunks held`);
        assert.equal(reopened.stats().corruptDropped, 0);
      } finally {
        await reopened.close();
      }
    }),
});

Deno.test({
  name: "StateDb on a full disk fails a change with a clear error and keeps its rows",
  ignore: CANNOT_MOUNT !== null,
  fn: () =>
    withSmallDisk(4 * MiB, async (disk) => {
      const path = `${disk.dir}/vat.sqlite`;
      const db = StateDb.open(path);
      db.add("alpha", "/repos/alpha");
      db.update("alpha", { lastVersion: 3, hoarded: true });
      await disk.fill();
      assert.throws(
        () => db.add("beta", `/repos/${"b".repeat(2 * MiB)}`),
        (err) =>
          err instanceof PermanentError &&
          /the disk of .*vat\.sqlite is full .*free some space on it and retry/.test(err.message),
      );
      // A small change may still fit in the WAL; if not, it fails the same way.
      let small = false;
      try {
        db.update("alpha", { lastVersion: 4 });
        small = true;
      } catch (err) {
        assert.ok(err instanceof PermanentError && /is full/.test(err.message), String(err));
      }
      assert.deepEqual(db.list().map((a) => a.name), ["alpha"], "reads keep working");
      db.close();

      await disk.free();
      assert.equal(_integrityCheck(path), "ok");
      const again = StateDb.open(path);
      try {
        const alpha = again.get("alpha");
        assert.equal(alpha.lastVersion, small ? 4 : 3);
        assert.equal(alpha.hoarded, true);
        assert.deepEqual(again.list().map((a) => a.name), ["alpha"]);
        again.add("beta", "/repos/beta");
        assert.deepEqual(again.list().map((a) => a.name), ["alpha", "beta"]);
      } finally {
        again.close();
      }
    }),
});

const VM = { memoryMiB: 64, cpus: 1 };

Deno.test({
  name: "Outbox on a full disk fails a snapshot with a clear error and keeps the queued ones",
  ignore: CANNOT_MOUNT !== null,
  fn: () =>
    withSmallDisk(8 * MiB, async (disk) => {
      const dir = `${disk.dir}/backup`;
      const objects = [_bytes(100 * KiB, 1), _bytes(100 * KiB, 2)];
      const names = objects.map((o) => hashChunk(o));
      const outbox = await Outbox.open(dir, "desk");
      const index = new DiskIndex(4 * MiB, 64 * KiB);
      index.setHash(0, names[0]);
      index.setHash(1, names[1]);
      const first = outbox.writer();
      for (let i = 0; i < 2; i++) await first.addObject(names[i], objects[i]);
      const info = (id: string) => ({
        id,
        takenAt: new Date().toISOString(),
        reason: "now" as const,
        changedBytes: 128 * KiB,
        dataBytes: 128 * KiB,
        vm: VM,
      });
      await first.commit(index, info("one"));
      const listing = async () => {
        const names: string[] = [];
        for await (const e of Deno.readDir(`${dir}/objects`)) names.push(e.name);
        return names.sort();
      };
      const before = await listing();

      await disk.fill();
      const second = outbox.writer();
      const big = _bytes(512 * KiB, 3);
      await assert.rejects(
        () => second.addObject(hashChunk(big), big),
        (err) =>
          err instanceof PermanentError &&
          /the disk of .*backup\/objects is full .*free some space/.test(err.message),
      );
      assert.deepEqual(await listing(), before, "no half-written object is left");
      // A commit whose index does not fit fails whole.
      const large = new DiskIndex(1024 * MiB, 64 * KiB);
      for (let i = 0; i < large.count; i++) large.setHash(i, names[i % 2]);
      await assert.rejects(
        () => second.commit(large, info("two")),
        (err) => err instanceof PermanentError && /the disk of .*backup is full/.test(err.message),
      );
      assert.throws(
        () => outbox.updateState({ forkNote: "n".repeat(2 * MiB) }),
        (err) => err instanceof PermanentError && /is full/.test(err.message),
      );
      await second.abandon();
      assert.equal(outbox.queuedCount(), 1);
      outbox.close();

      await disk.free();
      assert.equal(_integrityCheck(`${dir}/outbox.sqlite`), "ok");
      const again = await Outbox.open(dir, "desk");
      try {
        const queued = again.queued();
        assert.deepEqual(queued.map((q) => q.id), ["one"]);
        assert.equal(again.state().forkNote, null);
        assert.deepEqual(queued[0].objects.sort(), before);
        for (let i = 0; i < 2; i++) {
          assert.deepEqual(await again.readObject(toHex(names[i])), objects[i]);
        }
        const third = again.writer();
        await third.addObject(hashChunk(big), big);
        await third.commit(large, info("three"));
        assert.deepEqual(again.queued().map((q) => q.id), ["one", "three"]);
      } finally {
        again.close();
      }
    }),
});

const CHUNK = 64 * KiB;

/** A read-only base in memory: the overlay's base here, standing for a version disk. */
function _memoryBase(bytes: Uint8Array): ChunkSource {
  return {
    sizeBytes: bytes.length,
    readOnly: true,
    preferredBlockBytes: CHUNK,
    readChunk: (i) => Promise.resolve(bytes.slice(i * CHUNK, (i + 1) * CHUNK)),
    read(offset, into) {
      into.set(bytes.subarray(offset, offset + into.length));
      return Promise.resolve();
    },
    write: () => Promise.reject(new PermanentError("read-only")),
    flush: () => Promise.resolve(),
    trim: () => Promise.reject(new PermanentError("read-only")),
    writeZeroes: () => Promise.reject(new PermanentError("read-only")),
    close: () => Promise.resolve(),
  };
}

Deno.test({
  name:
    "CowOverlay on a full disk fails the write (ENOSPC to an NBD client) and keeps flushed data",
  ignore: CANNOT_MOUNT !== null,
  fn: () =>
    withSmallDisk(4 * MiB, async (disk) => {
      const baseBytes = _bytes(16 * MiB, 9);
      const base = _memoryBase(baseBytes);
      const path = `${disk.dir}/user.overlay`;
      const expected = baseBytes.slice();
      let overlay = await CowOverlay.open({ base, path });
      const early = _bytes(256 * KiB, 10);
      await overlay.write(100 * KiB, early);
      expected.set(early, 100 * KiB);
      await overlay.flush();

      await disk.fill();
      let failure: unknown;
      try {
        await overlay.write(4 * MiB, _bytes(MiB, 11));
      } catch (err) {
        failure = err;
      }
      assert.ok(failure instanceof PermanentError, String(failure));
      assert.match(failure.message, /the disk of .*user\.overlay is full .*free some space/);
      assert.equal(deviceErrorCode(failure), ENOSPC);
      // A write into a chunk the overlay already holds needs no new space and lands; the
      // flush that would make it durable cannot write the maps, and says so.
      const overwrite = _bytes(64 * KiB, 13);
      await overlay.write(128 * KiB, overwrite);
      expected.set(overwrite, 128 * KiB);
      await assert.rejects(
        () => overlay.flush(),
        (err) =>
          err instanceof PermanentError &&
          /the disk of .*user\.overlay.* is full/.test(err.message) &&
          deviceErrorCode(err) === ENOSPC,
      );

      // Through NBD: qemu-io's write is answered with ENOSPC, and what it wrote before
      // is still there.
      const socketPath = `${await Deno.makeTempDir({ prefix: "vat-full-disk-nbd-" })}/nbd.sock`;
      const logged: string[] = [];
      const server = serveNbd({
        exports: new Map([["", overlay]]),
        socketPath,
        log: (message) => logged.push(message),
      });
      try {
        const uri = `nbd+unix:///?socket=${socketPath}`;
        const write = await new Deno.Command("qemu-io", {
          args: ["-f", "raw", "-c", "write -P 0x5a 8M 1M", uri],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const said = new TextDecoder().decode(write.stdout) +
          new TextDecoder().decode(write.stderr);
        assert.match(said, /write failed: No space left on device/);
        const flush = await new Deno.Command("qemu-io", {
          args: ["-f", "raw", "-c", "flush", uri],
          stdout: "piped",
          stderr: "piped",
        }).output();
        // qemu-io says nothing of a failed flush, but exits 1; the server says why.
        assert.equal(flush.code, 1);
        assert.ok(
          logged.some((l) => /flush .* failed: the disk of .* is full/.test(l)),
          logged.join("\n"),
        );
        assert.ok(logged.some((l) => /is full/.test(l)), logged.join("\n"));
        const read = await new Deno.Command("qemu-io", {
          args: ["-f", "raw", "-r", "-c", `read -P 0x5a 8M 1M`, uri],
          stdout: "piped",
        }).output();
        assert.match(
          new TextDecoder().decode(read.stdout),
          /Pattern verification failed/,
          "the failed write did not land",
        );
      } finally {
        await server.close();
        await Deno.remove(socketPath.slice(0, socketPath.lastIndexOf("/")), { recursive: true });
      }
      const seen = new Uint8Array(overlay.sizeBytes);
      await overlay.read(0, seen);
      assert.ok(Buffer.from(seen).equals(Buffer.from(expected)), "only the writes that succeeded");

      await disk.free();
      await overlay.close(); // the flush that failed goes through now
      overlay = await CowOverlay.open({ base, path });
      try {
        const late = _bytes(MiB, 12);
        await overlay.write(4 * MiB, late);
        expected.set(late, 4 * MiB);
        await overlay.flush();
      } finally {
        await overlay.close();
      }
      overlay = await CowOverlay.open({ base, path });
      try {
        const after = new Uint8Array(overlay.sizeBytes);
        await overlay.read(0, after);
        assert.ok(
          Buffer.from(after).equals(Buffer.from(expected)),
          "reopened: every flushed write",
        );
      } finally {
        await overlay.close();
      }
    }),
});

Deno.test({
  name: "a daemon whose state dir's disk is full keeps answering its API",
  ignore: CANNOT_MOUNT !== null,
  fn: async () => {
    const work = await Deno.makeTempDir({ prefix: "vat-full-disk-daemon-" });
    try {
      await vatOk(["keygen", "--out", `${work}/key`]);
      for (const name of ["office", "other"]) {
        await vatOk(["repo", "init", `${work}/${name}`, "--kind", "appliance"]);
        await writeImage(`${work}/disk.raw`, 4 * MiB, [[0, MiB]]);
        await vatOk([
          "publish",
          `${work}/${name}`,
          "--image",
          `${work}/disk.raw`,
          "--key",
          `${work}/key`,
        ]);
        await Deno.remove(`${work}/disk.raw`);
      }
      await withSmallDisk(16 * MiB, async (disk) => {
        const state = `${disk.dir}/state`;
        await Deno.mkdir(state);
        const daemon = await startVat(
          ["--headless", "--state", state, "--port", "0"],
          (out) => out.includes("listening at"),
        );
        try {
          await vatOk(["appliance", "add", `${work}/office`, "--state", state]);
          await disk.fill();
          // Hoarding reads every chunk through the cache (stored nowhere now) and pins
          // them: it fails, or not, with a clear message; the daemon lives on.
          const hoard = await runVat(["hoard", "office", "--state", state]);
          if (hoard.code !== 0) assert.match(hoard.stderr, /is full.*free some space/);
          for (let i = 0; i < 3; i++) {
            const status = JSON.parse((await vatOk(["status", "--state", state, "--json"])).stdout);
            assert.deepEqual(status.appliances.map((a: { name: string }) => a.name), ["office"]);
            await new Promise((r) => setTimeout(r, 700)); // past the cache's 1 s flush
          }
          const ls = JSON.parse((await vatOk(["ls", "--state", state, "--json"])).stdout);
          assert.equal(ls.length, 1);
          const json = JSON.parse((await vatOk(["status", "--state", state, "--json"])).stdout);
          const human = (await vatOk(["status", "--state", state])).stdout;
          if (json.cache.diskFull) assert.match(human, /its disk is full: chunks are served/);
          const add = await runVat([
            "appliance",
            "add",
            `${work}/other`,
            "--name",
            `other-${"x".repeat(50)}`,
            "--state",
            state,
          ]);
          if (add.code !== 0) {
            assert.equal(add.code, 1, add.stderr);
            assert.match(add.stderr, /is full.*free some space/);
          }
          await disk.free();
          await vatOk(["hoard", "office", "--state", state]);
          const status = JSON.parse((await vatOk(["status", "--state", state, "--json"])).stdout);
          const office = status.appliances.find((a: { name: string }) => a.name === "office");
          assert.equal(office.hoarded, true);
          assert.equal(status.cache.diskFull, false);
          assert.doesNotMatch(daemon.output(), /Uncaught|error: /, daemon.output());
        } finally {
          await daemon.stop();
        }
      });
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  },
});
