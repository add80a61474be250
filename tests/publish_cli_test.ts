/**
 * The administrator's verbs end to end on a local directory repository, through the
 * real CLI: publish, export, ls, show, verify, gc, and every bad input the issue
 * names, each failing with a clear message, a non-zero exit and the repository
 * unchanged.
 */

import assert from "node:assert/strict";
import { runVat, spawnVat, vatOk } from "./helpers/vat_cli.ts";
import { sameBytes, scribble, treeDigest, writeImage } from "./helpers/images.ts";

const MiB = 1024 * 1024;
const KiB = 1024;

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vat-publish-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A repository with one published version of a 16 MiB image (half data). */
async function setUp(dir: string) {
  await vatOk(["keygen", "--out", `${dir}/key`]);
  await vatOk(["repo", "init", `${dir}/repo`, "--kind", "appliance"]);
  await writeImage(`${dir}/v1.raw`, 16 * MiB, [[0, 6 * MiB], [10 * MiB, 2 * MiB]]);
  await vatOk(["publish", `${dir}/repo`, "--image", `${dir}/v1.raw`, "--key", `${dir}/key`]);
}

/** Publishes `image` with `key` and returns `vat publish --json`'s report. */
async function publishJson(repo: string, image: string, key: string, ...extra: string[]) {
  const run = await vatOk(["publish", repo, "--image", image, "--key", key, "--json", ...extra]);
  return JSON.parse(run.stdout);
}

async function chunkFiles(repo: string): Promise<string[]> {
  const found: string[] = [];
  for await (const fan of Deno.readDir(`${repo}/chunks`)) {
    for await (const f of Deno.readDir(`${repo}/chunks/${fan.name}`)) {
      if (!f.name.startsWith(".")) found.push(`${repo}/chunks/${fan.name}/${f.name}`);
    }
  }
  return found.sort();
}

Deno.test("publish then export round-trips raw and qcow2 images byte for byte", async () => {
  await withDir(async (dir) => {
    await setUp(dir);
    await vatOk(["export", `${dir}/repo`, `${dir}/out1.raw`]);
    assert.ok(await sameBytes(`${dir}/v1.raw`, `${dir}/out1.raw`));

    // A qcow2 image with a user disk, kernel boot and VM settings.
    await scribble(`${dir}/v1.raw`, 3 * MiB + 123, 5000, 7);
    const convert = await new Deno.Command("qemu-img", {
      args: ["convert", "-O", "qcow2", `${dir}/v1.raw`, `${dir}/v2.qcow2`],
    }).output();
    assert.ok(convert.success);
    await writeImage(`${dir}/user.raw`, 4 * MiB + 512, [[0, 100 * KiB]], 9);
    await writeImage(`${dir}/kernel`, 3 * MiB + 77, [[0, 3 * MiB + 77]], 11);
    const published = await vatOk([
      "publish",
      `${dir}/repo`,
      "--image",
      `${dir}/v2.qcow2`,
      "--key",
      `${dir}/key`,
      "--user-disk",
      `${dir}/user.raw`,
      "--kernel",
      `${dir}/kernel`,
      "--append",
      "console=ttyS0",
      "--memory",
      "256",
      "--cpus",
      "2",
      "--ephemeral-size",
      "1G",
      "--json",
    ]);
    assert.equal(JSON.parse(published.stdout).version, 2);
    await vatOk(["export", `${dir}/repo@2`, `${dir}/out2.raw`]);
    assert.ok(await sameBytes(`${dir}/v1.raw`, `${dir}/out2.raw`));
    await vatOk(["export", `${dir}/repo@2`, "--disk", "user", `${dir}/user.out`]);
    assert.ok(await sameBytes(`${dir}/user.raw`, `${dir}/user.out`));
    await vatOk(["export", `${dir}/repo`, "--disk", "kernel", `${dir}/kernel.out`]);
    assert.ok(await sameBytes(`${dir}/kernel`, `${dir}/kernel.out`));
    // Version 1 is still there, unchanged.
    await vatOk(["export", `${dir}/repo@1`, `${dir}/again1.raw`]);
    assert.ok(await sameBytes(`${dir}/out1.raw`, `${dir}/again1.raw`));

    const shown = JSON.parse((await vatOk(["repo", "show", `${dir}/repo@2`, "--json"])).stdout);
    assert.deepEqual(shown.vm, {
      memoryMiB: 256,
      cpus: 2,
      ephemeralSizeBytes: 1024 * MiB,
      kernel: "kernel",
      append: "console=ttyS0",
    });
    assert.equal(shown.parent, 1);
    const listed = JSON.parse((await vatOk(["repo", "ls", `${dir}/repo`, "--json"])).stdout);
    assert.deepEqual(listed.versions.map((v: { version: number }) => v.version), [1, 2]);
    const text = await vatOk(["repo", "ls", `${dir}/repo`]);
    assert.match(text.stdout, /^\s+1\s.*system 16\.0 MiB/m);
  });
});

Deno.test("a version with 1% of the disk changed stores about 1% new data", async () => {
  await withDir(async (dir) => {
    await vatOk(["keygen", "--out", `${dir}/key`]);
    await vatOk(["repo", "init", `${dir}/repo`, "--kind", "appliance"]);
    const size = 64 * MiB;
    await writeImage(`${dir}/disk.raw`, size, [[0, size]]);
    const v1 = await publishJson(`${dir}/repo`, `${dir}/disk.raw`, `${dir}/key`);
    // Ten scattered writes of 1/1000 of the disk each, at unaligned offsets.
    for (let i = 0; i < 10; i++) {
      await scribble(
        `${dir}/disk.raw`,
        Math.floor((i + 0.37) * size / 10),
        Math.floor(size / 1000),
        100 + i,
      );
    }
    const v2 = await publishJson(`${dir}/repo`, `${dir}/disk.raw`, `${dir}/key`);
    const share = v2.newStoredBytes / v1.newStoredBytes;
    // Each scattered write straddles at most two 64 KiB chunks.
    assert.ok(share > 0.009 && share < 0.03, `v2 stored ${(share * 100).toFixed(2)}% of v1`);
  });
});

Deno.test("repo gc keeps what the remaining versions need and nothing else", async () => {
  await withDir(async (dir) => {
    await setUp(dir);
    const pub = () =>
      vatOk(["publish", `${dir}/repo`, "--image", `${dir}/v1.raw`, "--key", `${dir}/key`]);
    await scribble(`${dir}/v1.raw`, 0, 1 * MiB, 21);
    await pub();
    await scribble(`${dir}/v1.raw`, 2 * MiB, 1 * MiB, 22);
    await pub();
    const before = (await chunkFiles(`${dir}/repo`)).length;
    const report = JSON.parse(
      (await vatOk(["repo", "gc", `${dir}/repo`, "--keep", "2", "--json"])).stdout,
    );
    assert.deepEqual(report.deletedVersions, [1]);
    assert.equal(report.deletedChunks, 16); // the 1 MiB v2 rewrote at offset 0
    assert.equal((await chunkFiles(`${dir}/repo`)).length, before - 16);
    const verify = await vatOk(["repo", "verify", `${dir}/repo`, "--all", "--json"]);
    assert.equal(JSON.parse(verify.stdout).ok, true);
    assert.equal(JSON.parse(verify.stdout).chunks, report.keptChunks);
    // The newest version still exports exactly.
    await vatOk(["export", `${dir}/repo`, `${dir}/out.raw`]);
    assert.ok(await sameBytes(`${dir}/v1.raw`, `${dir}/out.raw`));
    const gone = await runVat(["export", `${dir}/repo@1`, `${dir}/old.raw`]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /version 1 does not exist/);
    // Nothing is left under the deleted version's directory.
    const left = [];
    try {
      for await (const e of Deno.readDir(`${dir}/repo/versions/1`)) left.push(e.name);
    } catch { /* removed entirely */ }
    assert.deepEqual(left, []);
  });
});

Deno.test("a corrupt or truncated chunk fails export and verify, and changes nothing", async () => {
  await withDir(async (dir) => {
    await setUp(dir);
    const chunks = await chunkFiles(`${dir}/repo`);
    const flipped = await Deno.readFile(chunks[0]);
    flipped[flipped.length - 1] ^= 0x40;
    await Deno.writeFile(chunks[0], flipped);
    const truncated = await Deno.readFile(chunks[1]);
    await Deno.writeFile(chunks[1], truncated.subarray(0, truncated.length >> 1));
    const digest = await treeDigest(`${dir}/repo`);

    const exported = await runVat(["export", `${dir}/repo`, `${dir}/out.raw`]);
    assert.equal(exported.code, 1);
    assert.match(exported.stderr, /chunk [0-9a-f]{64} in .* is corrupt/);
    await assert.rejects(Deno.stat(`${dir}/out.raw`), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(`${dir}/out.raw.vat-partial`), Deno.errors.NotFound);

    const verify = await runVat(["repo", "verify", `${dir}/repo`, "--all"]);
    assert.equal(verify.code, 1);
    assert.equal(verify.stderr.match(/is corrupt/g)?.length, 2);
    assert.equal(await treeDigest(`${dir}/repo`), digest);
  });
});

Deno.test("an index naming a missing chunk is reported by verify and export", async () => {
  await withDir(async (dir) => {
    await setUp(dir);
    const chunks = await chunkFiles(`${dir}/repo`);
    await Deno.remove(chunks[3]);
    const id = chunks[3].slice(chunks[3].lastIndexOf("/") + 1);
    const verify = await runVat(["repo", "verify", `${dir}/repo`]);
    assert.equal(verify.code, 1);
    assert.match(
      verify.stderr,
      new RegExp(`chunk ${id} \\(version 1 system disk, chunk \\d+\\) is missing`),
    );
    const exported = await runVat(["export", `${dir}/repo`, `${dir}/out.raw`]);
    assert.equal(exported.code, 1);
    assert.match(exported.stderr, new RegExp(`chunk ${id} is missing`));
  });
});

Deno.test("a tampered manifest or signature is refused", async () => {
  await withDir(async (dir) => {
    await setUp(dir);
    const path = `${dir}/repo/versions/1/manifest.json`;
    const original = await Deno.readTextFile(path);
    const envelope = JSON.parse(original);

    const payload = JSON.parse(envelope.payload);
    payload.vm.memoryMiB = 65536;
    await Deno.writeTextFile(
      path,
      JSON.stringify({ ...envelope, payload: JSON.stringify(payload) }),
    );
    for (const args of [["repo", "show", `${dir}/repo`], ["export", `${dir}/repo`, `${dir}/o`]]) {
      const run = await runVat(args);
      assert.equal(run.code, 1, args.join(" "));
      assert.match(run.stderr, /version 1: signature does not verify/);
    }

    const sig = envelope.signatures[0].sig as string;
    const badSig = (sig[0] === "A" ? "B" : "A") + sig.slice(1);
    await Deno.writeTextFile(
      path,
      JSON.stringify({ ...envelope, signatures: [{ ...envelope.signatures[0], sig: badSig }] }),
    );
    const run = await runVat(["repo", "verify", `${dir}/repo`]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /signature does not verify/);

    // Signed by a key that is not the repository's publisher.
    await vatOk(["keygen", "--out", `${dir}/other`]);
    await Deno.writeTextFile(path, original);
    const repoJson = JSON.parse(await Deno.readTextFile(`${dir}/repo/repo.json`));
    repoJson.publisherKeys = [(await Deno.readTextFile(`${dir}/other.pub`)).trim()];
    await Deno.writeTextFile(`${dir}/repo/repo.json`, JSON.stringify(repoJson));
    assert.match(
      (await runVat(["repo", "show", `${dir}/repo`])).stderr,
      /version 1: signed by ed25519:\S+ \(SHA256:\S+\), which is not among the repository's trusted publisher keys/,
    );
  });
});

Deno.test("a manifest naming an index outside its version is refused", async () => {
  await withDir(async (dir) => {
    await setUp(dir);
    // Made with the publisher's own key, so only the path check can catch it.
    // (signManifest itself refuses such a manifest, so it is signed by hand.)
    const { loadSigningKey, signBytes } = await import("../vat/auth/signing_key.ts");
    const key = await loadSigningKey(`${dir}/key`);
    const path = `${dir}/repo/versions/1/manifest.json`;
    const manifest = JSON.parse(JSON.parse(await Deno.readTextFile(path)).payload);
    for (const indexKey of ["versions/1/../../../etc/passwd", "chunks/../../x"]) {
      manifest.disks.system.index.key = indexKey;
      const payload = JSON.stringify(manifest);
      const sig = signBytes(key, new TextEncoder().encode("vat-manifest-v1\n" + payload));
      await Deno.writeTextFile(
        path,
        JSON.stringify({ payload, signatures: [{ key: key.publicKeyId, sig }] }),
      );
      const run = await runVat(["export", `${dir}/repo`, `${dir}/o`]);
      assert.equal(run.code, 1);
      assert.match(run.stderr, /disks\.system\.index\.key is invalid/);
    }
    const disk = await runVat(["export", `${dir}/repo`, "--disk", "../x", `${dir}/o`]);
    assert.equal(disk.code, 1);
  });
});

Deno.test("unknown repositories, versions and disks give clear errors", async () => {
  await withDir(async (dir) => {
    await setUp(dir);
    const noRepo = await runVat(["repo", "ls", `${dir}/nothing`]);
    assert.equal(noRepo.code, 1);
    assert.match(noRepo.stderr, /no vat repository at .*nothing \(create one with: vat repo init/);
    const noVersion = await runVat(["export", `${dir}/repo@9`, `${dir}/o`]);
    assert.equal(noVersion.code, 1);
    assert.match(noVersion.stderr, /version 9 does not exist/);
    const noDisk = await runVat(["export", `${dir}/repo`, "--disk", "user", `${dir}/o`]);
    assert.match(noDisk.stderr, /version 1 has no user disk \(it has: system\)/);
    const noImage = await runVat([
      "publish",
      `${dir}/repo`,
      "--image",
      `${dir}/none.raw`,
      "--key",
      `${dir}/key`,
    ]);
    assert.equal(noImage.code, 1);
    assert.match(noImage.stderr, /image .*none\.raw does not exist/);
    const usage = await runVat(["publish", `${dir}/repo`]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--image PATH is required/);
    const again = await runVat(["repo", "init", `${dir}/repo`, "--kind", "appliance"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already holds a vat repository/);
    const badSize = await runVat([
      "repo",
      "init",
      `${dir}/r2`,
      "--kind",
      "appliance",
      "--chunk-size",
      "3000",
    ]);
    assert.equal(badSize.code, 1);
    assert.match(badSize.stderr, /must be a power of two/);
  });
});

Deno.test("publishing with a key that is not the repository's publisher changes nothing", async () => {
  await withDir(async (dir) => {
    await setUp(dir);
    await vatOk(["keygen", "--out", `${dir}/intruder`]);
    const digest = await treeDigest(`${dir}/repo`);
    const run = await runVat([
      "publish",
      `${dir}/repo`,
      "--image",
      `${dir}/v1.raw`,
      "--key",
      `${dir}/intruder`,
    ]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /key ed25519:\S+ is not a publisher of .*vat repo add-key/);
    assert.equal(await treeDigest(`${dir}/repo`), digest);
    const notAKey = await runVat([
      "publish",
      `${dir}/repo`,
      "--image",
      `${dir}/v1.raw`,
      "--key",
      `${dir}/v1.raw`,
    ]);
    assert.equal(notAKey.code, 2);
    assert.match(notAKey.stderr, /is not a private key/);
  });
});

Deno.test({
  name: "publish onto a full disk fails clearly and commits nothing",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    await withDir(async (dir) => {
      await Deno.mkdir(`${dir}/small`);
      const mount = await new Deno.Command("mount", {
        args: ["-t", "tmpfs", "-o", "size=6m", "tmpfs", `${dir}/small`],
      }).output();
      assert.ok(mount.success, new TextDecoder().decode(mount.stderr));
      try {
        await vatOk(["keygen", "--out", `${dir}/key`]);
        await vatOk(["repo", "init", `${dir}/small/repo`, "--kind", "appliance"]);
        await writeImage(`${dir}/big.raw`, 16 * MiB, [[0, 16 * MiB]]);
        const run = await runVat([
          "publish",
          `${dir}/small/repo`,
          "--image",
          `${dir}/big.raw`,
          "--key",
          `${dir}/key`,
        ]);
        assert.equal(run.code, 1);
        assert.match(run.stderr, /the disk of .* is full .*free some space/);
        const ls = JSON.parse((await vatOk(["repo", "ls", `${dir}/small/repo`, "--json"])).stdout);
        assert.deepEqual(ls.versions, []);
        // No temporary files are left behind.
        const temps = [];
        for await (const e of Deno.readDir(`${dir}/small/repo/chunks`)) {
          for await (const f of Deno.readDir(`${dir}/small/repo/chunks/${e.name}`)) {
            if (f.name.startsWith(".")) temps.push(f.name);
          }
        }
        assert.deepEqual(temps, []);
      } finally {
        await new Deno.Command("umount", { args: [`${dir}/small`] }).output();
      }
    });
  },
});

Deno.test("a publish killed at any point leaves no partial version, and the next one succeeds", async () => {
  await withDir(async (dir) => {
    await setUp(dir);
    await writeImage(`${dir}/v2.raw`, 48 * MiB, [[0, 48 * MiB]], 5);
    for (const delayMs of [150, 400, 700, 1000, 1400]) {
      const child = spawnVat([
        "publish",
        `${dir}/repo`,
        "--image",
        `${dir}/v2.raw`,
        "--key",
        `${dir}/key`,
      ]);
      await new Promise((r) => setTimeout(r, delayMs));
      try {
        child.kill("SIGKILL");
      } catch { /* already finished */ }
      await child.output();
      const ls = JSON.parse((await vatOk(["repo", "ls", `${dir}/repo`, "--json"])).stdout);
      // Either the kill came first (one version) or the publish committed (two).
      for (const v of ls.versions) assert.ok(v.version <= 2);
      const verify = await vatOk(["repo", "verify", `${dir}/repo`, "--json"]);
      assert.equal(JSON.parse(verify.stdout).ok, true);
      if (ls.versions.length === 2) break;
    }
    const done = JSON.parse(
      (await vatOk([
        "publish",
        `${dir}/repo`,
        "--image",
        `${dir}/v2.raw`,
        "--key",
        `${dir}/key`,
        "--json",
      ])).stdout,
    );
    assert.ok(done.version >= 2);
    await vatOk(["export", `${dir}/repo`, `${dir}/out.raw`]);
    assert.ok(await sameBytes(`${dir}/v2.raw`, `${dir}/out.raw`));
    await vatOk(["repo", "verify", `${dir}/repo`, "--all"]);
  });
});

Deno.test("two publishers racing: both commit, as consecutive versions", async () => {
  await withDir(async (dir) => {
    await setUp(dir);
    await writeImage(`${dir}/a.raw`, 8 * MiB, [[0, 8 * MiB]], 31);
    await writeImage(`${dir}/b.raw`, 8 * MiB, [[0, 8 * MiB]], 32);
    const [a, b] = await Promise.all([
      vatOk(["publish", `${dir}/repo`, "--image", `${dir}/a.raw`, "--key", `${dir}/key`, "--json"]),
      vatOk(["publish", `${dir}/repo`, "--image", `${dir}/b.raw`, "--key", `${dir}/key`, "--json"]),
    ]);
    const versions = [JSON.parse(a.stdout).version, JSON.parse(b.stdout).version].sort();
    assert.deepEqual(versions, [2, 3]);
    const wonA = JSON.parse(a.stdout).version;
    await vatOk(["export", `${dir}/repo@${wonA}`, `${dir}/out.raw`]);
    assert.ok(await sameBytes(`${dir}/a.raw`, `${dir}/out.raw`));
    await vatOk(["repo", "verify", `${dir}/repo`, "--all"]);
  });
});

Deno.test("publish drops the stale data of blocks ext4 does not use; --exact keeps every byte", async () => {
  await withDir(async (dir) => {
    await vatOk(["keygen", "--out", `${dir}/key`]);
    await vatOk(["repo", "init", `${dir}/repo`, "--kind", "appliance"]);
    // An ext4 image with a file, then that file deleted: its blocks keep its bytes.
    await Deno.mkdir(`${dir}/root`);
    await Deno.writeTextFile(`${dir}/root/keep.txt`, "KEEP-ME ".repeat(20000));
    await Deno.writeTextFile(`${dir}/root/gone.txt`, "STALE-SECRET ".repeat(20000));
    const mkfs = await new Deno.Command("mkfs.ext4", {
      args: ["-q", "-F", "-d", `${dir}/root`, `${dir}/fs.raw`, "32M"],
    }).output();
    assert.ok(mkfs.success, new TextDecoder().decode(mkfs.stderr));
    const rm = await new Deno.Command("debugfs", {
      args: ["-w", "-R", "rm gone.txt", `${dir}/fs.raw`],
    })
      .output();
    assert.ok(rm.success);
    const has = async (path: string, text: string) =>
      Buffer.from(await Deno.readFile(path)).includes(Buffer.from(text));
    assert.ok(
      await has(`${dir}/fs.raw`, "STALE-SECRET"),
      "the deleted file's bytes are in the image",
    );

    await vatOk(["publish", `${dir}/repo`, "--image", `${dir}/fs.raw`, "--key", `${dir}/key`]);
    await vatOk(["export", `${dir}/repo`, `${dir}/out.raw`]);
    assert.ok(!(await has(`${dir}/out.raw`, "STALE-SECRET")), "stale data is not published");
    assert.ok(await has(`${dir}/out.raw`, "KEEP-ME"));
    const fsck = await new Deno.Command("e2fsck", { args: ["-fn", `${dir}/out.raw`] }).output();
    assert.ok(
      fsck.success,
      `the published filesystem is clean:\n${new TextDecoder().decode(fsck.stdout)}`,
    );

    await vatOk([
      "publish",
      `${dir}/repo`,
      "--image",
      `${dir}/fs.raw`,
      "--key",
      `${dir}/key`,
      "--exact",
    ]);
    await vatOk(["export", `${dir}/repo@2`, `${dir}/exact.raw`]);
    assert.ok(await sameBytes(`${dir}/fs.raw`, `${dir}/exact.raw`));
  });
});

Deno.test("gc while a publish runs takes no lock: the publish commits whole, gc sweeps later", async () => {
  await withDir(async (dir) => {
    await setUp(dir);
    await writeImage(`${dir}/v2.raw`, 48 * MiB, [[0, 48 * MiB]], 77);
    const publisher = spawnVat([
      "publish",
      `${dir}/repo`,
      "--image",
      `${dir}/v2.raw`,
      "--key",
      `${dir}/key`,
    ]);
    // Wait until the publish has announced itself.
    const announced = async () => {
      for await (const e of Deno.readDir(`${dir}/repo/activity`)) {
        if (/^publish-[0-9a-f-]+$/.test(e.name)) return true;
      }
      return false;
    };
    const deadline = Date.now() + 20_000;
    while (!(await announced().catch(() => false))) {
      assert.ok(Date.now() < deadline, "the publish announced itself");
      await new Promise((r) => setTimeout(r, 20));
    }
    const during = JSON.parse(
      (await vatOk(["repo", "gc", `${dir}/repo`, "--keep", "1", "--json"])).stdout,
    );
    const { code } = await publisher.output();
    assert.equal(code, 0, "the publish was not stopped by gc");
    // Unless the publish finished first, gc saw it and left the sweep to a later run.
    assert.ok(
      during.sweepPostponed || during.keptVersions.includes(2),
      `gc swept under a running publish: ${JSON.stringify(during)}`,
    );
    await vatOk(["repo", "verify", `${dir}/repo`, "--all"]);
    await vatOk(["export", `${dir}/repo`, `${dir}/out.raw`]);
    assert.ok(await sameBytes(`${dir}/v2.raw`, `${dir}/out.raw`));

    // With no publisher running, the next gc reclaims version 1's chunks.
    const after = JSON.parse(
      (await vatOk(["repo", "gc", `${dir}/repo`, "--keep", "1", "--json"])).stdout,
    );
    assert.equal(after.sweepPostponed, false);
    assert.equal((await chunkFiles(`${dir}/repo`)).length, after.keptChunks);
    await vatOk(["repo", "verify", `${dir}/repo`, "--all"]);
  });
});

Deno.test("gc reclaims what a killed publish left behind", async () => {
  await withDir(async (dir) => {
    await setUp(dir);
    const before = (await chunkFiles(`${dir}/repo`)).length;
    await writeImage(`${dir}/big.raw`, 48 * MiB, [[0, 48 * MiB]], 78);
    const publisher = spawnVat([
      "publish",
      `${dir}/repo`,
      "--image",
      `${dir}/big.raw`,
      "--key",
      `${dir}/key`,
    ]);
    while ((await chunkFiles(`${dir}/repo`)).length < before + 20) {
      await new Promise((r) => setTimeout(r, 20));
    }
    publisher.kill("SIGKILL");
    await publisher.output();
    const orphans = (await chunkFiles(`${dir}/repo`)).length - before;
    assert.ok(orphans >= 20);
    // The killed publisher's announcement is fresh for ten minutes: gc waits for it
    // to go stale rather than sweep under a publisher that may still be alive.
    const fresh = JSON.parse(
      (await vatOk(["repo", "gc", `${dir}/repo`, "--keep", "1", "--json"])).stdout,
    );
    assert.equal(fresh.sweepPostponed, true);
    // Once it is stale (its files aged past the limit), gc reclaims every orphan.
    const old = new Date(Date.now() - 11 * 60_000);
    for await (const e of Deno.readDir(`${dir}/repo/activity`)) {
      await Deno.utime(`${dir}/repo/activity/${e.name}`, old, old);
    }
    // And the temporary files of writes that were killed, once an hour old (a fresh
    // one may be a write in progress: it stays).
    const hourAgo = new Date(Date.now() - 61 * 60_000);
    await Deno.writeTextFile(`${dir}/repo/chunks/.ab12.tmp-99999-1-x`, "half a chunk");
    await Deno.utime(`${dir}/repo/chunks/.ab12.tmp-99999-1-x`, hourAgo, hourAgo);
    await Deno.writeTextFile(`${dir}/repo/.latest.tmp-99999-2-y`, "7");
    const report = JSON.parse(
      (await vatOk(["repo", "gc", `${dir}/repo`, "--keep", "1", "--json"])).stdout,
    );
    assert.equal(report.sweepPostponed, false);
    assert.equal(report.deletedChunks, orphans);
    assert.equal(report.temporaryFiles, 1);
    assert.equal(await Deno.stat(`${dir}/repo/chunks/.ab12.tmp-99999-1-x`).catch(() => null), null);
    assert.ok(await Deno.stat(`${dir}/repo/.latest.tmp-99999-2-y`));
    assert.equal((await chunkFiles(`${dir}/repo`)).length, before);
    await vatOk(["repo", "verify", `${dir}/repo`, "--all"]);
  });
});
