/**
 * `vat nbd` served to real NBD clients (qemu-img, qemu-io, nbdcopy): byte-identical
 * reads against `vat export` with a cold and a warm cache, copy-on-write writes at
 * unaligned offsets, the lockdown and persistent overlay modes, SIGKILL during
 * writes, and a repository that disappears mid-read.
 */

import assert from "node:assert/strict";
import { sameBytes, writeImage } from "./helpers/images.ts";
import { run, runOk, startVat, type VatProcess } from "./helpers/processes.ts";
import { runVat, vatOk } from "./helpers/vat_cli.ts";

const MiB = 1024 * 1024;

interface Fixture {
  dir: string;
  repo: string;
  image: string;
  socket: string;
  uri: string;
}

async function withRepo(fn: (f: Fixture) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vat-nbd-test-" });
  try {
    const f = {
      dir,
      repo: `${dir}/repo`,
      image: `${dir}/disk.raw`,
      socket: `${dir}/nbd.sock`,
      uri: `nbd+unix:///?socket=${dir}/nbd.sock`,
    };
    await vatOk(["keygen", "--out", `${dir}/key`]);
    await vatOk(["repo", "init", f.repo, "--kind", "appliance"]);
    await writeImage(f.image, 24 * MiB, [[0, 5 * MiB], [9 * MiB + 4096, 3 * MiB], [
      20 * MiB,
      4 * MiB,
    ]]);
    await writeImage(`${dir}/user.raw`, 8 * MiB, [[MiB, MiB]], 3);
    await vatOk([
      "publish",
      f.repo,
      "--image",
      f.image,
      "--user-disk",
      `${dir}/user.raw`,
      "--key",
      `${dir}/key`,
    ]);
    await fn(f);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function serveNbd(f: Fixture, extra: string[] = [], repo = f.repo): Promise<VatProcess> {
  return startVat(
    ["nbd", repo, "--socket", f.socket, "--cache", `${f.dir}/cache`, ...extra],
    (out) => out.includes("serving the"),
  );
}

Deno.test("vat nbd reads are byte-identical to vat export, cold and warm", async () => {
  await withRepo(async (f) => {
    await vatOk(["export", f.repo, `${f.dir}/exported.raw`]);
    const server = await serveNbd(f);
    try {
      // Cold cache: every chunk comes from the repository.
      await runOk("qemu-img", [
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        `${f.dir}/exported.raw`,
        f.uri,
      ]);
      // Warm cache: nbdcopy reads with many requests in flight.
      await runOk("nbdcopy", ["--requests=16", f.uri, `${f.dir}/copy.raw`]);
      assert.ok(await sameBytes(`${f.dir}/exported.raw`, `${f.dir}/copy.raw`));
      const info = await runOk("nbdinfo", ["--json", f.uri]);
      const exp = JSON.parse(info).exports[0];
      assert.equal(exp["export-size"], 24 * MiB);
      assert.equal(exp["is_read_only"], true);
      assert.equal(exp["block_size_preferred"], 64 * 1024);
    } finally {
      await server.stop();
    }
    // A new process over the same cache: still identical, nothing fetched.
    await Deno.remove(`${f.repo}/chunks`, { recursive: true });
    const again = await serveNbd(f);
    try {
      await runOk("qemu-img", [
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        `${f.dir}/exported.raw`,
        f.uri,
      ]);
    } finally {
      await again.stop();
    }
  });
});

Deno.test("vat nbd writes at unaligned offsets read back, and the user disk keeps them", async () => {
  await withRepo(async (f) => {
    const overlay = `${f.dir}/user.overlay`;
    let server = await serveNbd(f, ["--disk", "user", "--overlay", overlay]);
    try {
      await runOk("qemu-io", [
        "-f",
        "raw",
        f.uri,
        "-c",
        "write -P 0xab 1000 5000",
        "-c",
        "write -P 0xcd 65530 12",
        "-c",
        "write -z 2097152 65536",
        "-c",
        "discard 3145728 131072",
        "-c",
        "flush",
        "-c",
        "read -P 0xab 1000 5000",
        "-c",
        "read -P 0xcd 65530 12",
        "-c",
        "read -P 0 2097152 65536",
        "-c",
        "read -P 0 3145728 131072",
      ]);
      // Bytes around the writes still hold the base's content.
      const local = await Deno.readFile(`${f.dir}/user.raw`);
      local.fill(0xab, 1000, 6000);
      local.fill(0xcd, 65530, 65542);
      local.fill(0, 2 * MiB, 2 * MiB + 65536);
      local.fill(0, 3 * MiB, 3 * MiB + 131072);
      await Deno.writeFile(`${f.dir}/expected.raw`, local);
      await runOk("qemu-img", [
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        `${f.dir}/expected.raw`,
        f.uri,
      ]);
    } finally {
      await server.stop();
    }
    server = await serveNbd(f, ["--disk", "user", "--overlay", overlay]);
    try {
      await runOk("qemu-img", [
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        `${f.dir}/expected.raw`,
        f.uri,
      ]);
    } finally {
      await server.stop();
    }
  });
});

Deno.test("vat nbd throws away system disk writes at every start unless told to keep them", async () => {
  await withRepo(async (f) => {
    const overlay = `${f.dir}/system.overlay`;
    const write = () =>
      runOk("qemu-io", ["-f", "raw", f.uri, "-c", "write -P 0x5a 4096 4096", "-c", "flush"]);
    let server = await serveNbd(f, ["--overlay", overlay]);
    try {
      await write();
      await runOk("qemu-io", ["-f", "raw", f.uri, "-c", "read -P 0x5a 4096 4096"]);
    } finally {
      await server.stop();
    }
    server = await serveNbd(f, ["--overlay", overlay, "--keep-overlay"]);
    try {
      await runOk("qemu-io", ["-f", "raw", f.uri, "-c", "read -P 0x5a 4096 4096"]);
    } finally {
      await server.stop();
    }
    server = await serveNbd(f, ["--overlay", overlay]);
    try {
      await runOk("qemu-img", ["compare", "-f", "raw", "-F", "raw", f.image, f.uri]);
    } finally {
      await server.stop();
    }
  });
});

Deno.test("vat nbd --read-only serves a user disk's overlay as its guest left it and refuses writes", async () => {
  await withRepo(async (f) => {
    const overlay = `${f.dir}/user.overlay`;
    let server = await serveNbd(f, ["--disk", "user", "--overlay", overlay]);
    try {
      await runOk("qemu-io", ["-f", "raw", f.uri, "-c", "write -P 0x6b 65536 8192", "-c", "flush"]);
    } finally {
      await server.stop();
    }
    const before = await Deno.readFile(overlay);
    server = await serveNbd(f, ["--disk", "user", "--overlay", overlay, "--read-only"]);
    try {
      await runOk("qemu-io", ["-r", "-f", "raw", f.uri, "-c", "read -P 0x6b 65536 8192"]);
      const info = JSON.parse(await runOk("nbdinfo", ["--json", f.uri]));
      assert.equal(info.exports[0]["is_read_only"], true);
      // The export says read-only: a client asking to write cannot even open it.
      const write = await run("qemu-io", ["-f", "raw", f.uri, "-c", "write -P 0x01 0 4096"]);
      assert.match(write.stdout + write.stderr, /read.only|Permission denied|not permitted/i);
    } finally {
      await server.stop();
    }
    assert.deepEqual(await Deno.readFile(overlay), before);
    // An overlay that is not there is an error, not a new empty one.
    const missing = await runVat([
      "nbd",
      f.repo,
      "--socket",
      f.socket,
      "--overlay",
      `${f.dir}/nope`,
      "--read-only",
    ]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /nope does not exist; --read-only serves an existing one/);
  });
});

Deno.test("vat nbd killed with SIGKILL during writes keeps every flushed write", async () => {
  await withRepo(async (f) => {
    const overlay = `${f.dir}/user.overlay`;
    let server = await serveNbd(f, ["--disk", "user", "--overlay", overlay]);
    // Flushed writes first, then a stream of unflushed ones cut short by the kill.
    await runOk("qemu-io", [
      "-f",
      "raw",
      f.uri,
      "-c",
      "write -P 0x11 100000 300000",
      "-c",
      "flush",
    ]);
    const writer = new Deno.Command("qemu-io", {
      args: [
        "-f",
        "raw",
        f.uri,
        ...Array.from({ length: 200 }, (_, i) => ["-c", `write -P 0x22 ${4 * MiB + i * 9000} 7000`])
          .flat(),
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    await new Promise((r) => setTimeout(r, 300));
    await server.stop("SIGKILL");
    await writer.status;
    server = await serveNbd(f, ["--disk", "user", "--overlay", overlay]);
    try {
      await runOk("qemu-io", ["-f", "raw", f.uri, "-c", "read -P 0x11 100000 300000"]);
      // Every byte of the cut-short region is either the base's or the new pattern,
      // and the rest of the disk is the base's.
      await runOk("nbdcopy", [f.uri, `${f.dir}/after.raw`]);
      const after = await Deno.readFile(`${f.dir}/after.raw`);
      const base = await Deno.readFile(`${f.dir}/user.raw`);
      for (let i = 0; i < after.length; i++) {
        if (i >= 100000 && i < 400000) continue;
        if (after[i] !== base[i] && !(after[i] === 0x22 && i >= 4 * MiB)) {
          assert.fail(`byte ${i} is ${after[i]}, neither the base's ${base[i]} nor a write's`);
        }
      }
    } finally {
      await server.stop();
    }
  });
});

Deno.test("vat nbd fails reads with an I/O error when the repository disappears, never with wrong data", async () => {
  await withRepo(async (f) => {
    const served = await startVat(
      ["serve", "--root", f.dir, "--listen", "127.0.0.1:0"],
      (out) => /serving .* at http/.test(out),
    );
    const url = /at (http\S+)/.exec(served.output())![1];
    let server: VatProcess | null = null;
    try {
      server = await serveNbd(f, ["--retry-for", "1"], `${url}repo`);
      // Part of the disk is read (and cached) while the repository is there.
      await runOk("qemu-io", ["-r", "-f", "raw", f.uri, "-c", "read 0 1048576"]);
      await served.stop();
      // 10 MiB in is not cached yet: the read fails within the retry window.
      const started = Date.now();
      const failed = await run("qemu-io", [
        "-r",
        "-f",
        "raw",
        f.uri,
        "-c",
        "read -P 0 10485760 65536",
      ]);
      assert.match(failed.stdout + failed.stderr, /Input\/output error/);
      assert.ok(Date.now() - started < 10_000, "the read fails within the retry window");
      assert.match(server.output(), /fetching chunk [0-9a-f]{64} failed/);
      // What was cached still reads correctly.
      await runOk("qemu-io", ["-r", "-f", "raw", f.uri, "-c", "read -v 0 16"]);
    } finally {
      await server?.stop();
      await served.stop();
    }
  });
});
