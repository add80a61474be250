/**
 * Self-update end to end, with real processes and no QEMU (docs/UPDATE.md): releases of
 * vat bundled from copies of this source tree with other version numbers, published to a
 * release repository, installed into the slots by `vat update apply`, started by the
 * launcher script (each slot's own Deno runtime running its own bundle), an update that
 * fetches only its changed chunks (measured against the whole release and rsync), a
 * release that fails to start rolled back by the launcher, the refusals (an older vat,
 * an unpinned key), a 4xx that is not retried forever, and a killed download resumed.
 *
 * Bundling vat takes a few seconds and publishing the 95 MB runtime about ten: the
 * sources and the first release are made once for the file.
 */

import assert from "node:assert/strict";
import { toHex } from "../vat/repo/chunk_codec.ts";
import { FileStore } from "../vat/repo/store_file.ts";
import { Repository } from "../vat/repo/repository.ts";
import { formatBytes } from "../vat/progress.ts";
import { run, spawnCollected } from "./helpers/processes.ts";
import { runVat, vatOk } from "./helpers/vat_cli.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** What every test starts from. */
interface Fixture {
  dir: string;
  key: string;
  /** A release repository holding release 1: vat 0.2.0 bundled from `srcA`. */
  repo: string;
  /** Source trees: vat 0.2.0, and vat 0.3.0 with one changed line. */
  srcA: string;
  srcB: string;
}

let _fixture: Promise<Fixture> | null = null;

function fixture(): Promise<Fixture> {
  _fixture ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "vat-update-fixture-" });
    globalThis.addEventListener("unload", () => {
      Deno.removeSync(dir, { recursive: true });
    });
    const srcA = await _copySource(`${dir}/src-a`, "0.2.0");
    const srcB = await _copySource(`${dir}/src-b`, "0.3.0", (text) =>
      // One line of one module changes length: the modules after it move.
      text.replace(
        "other publishers kept committing first; retry",
        "other publishers kept committing first; retry later",
      ));
    await vatOk(["keygen", "--out", `${dir}/key`]);
    await vatOk(["repo", "init", `${dir}/repo`, "--kind", "release"]);
    await vatOk([
      "release",
      "publish",
      `${dir}/repo`,
      "--key",
      `${dir}/key`,
      "--source",
      srcA,
      "--note",
      "first",
      "--quiet",
    ]);
    return { dir, key: `${dir}/key`, repo: `${dir}/repo`, srcA, srcB };
  })();
  return _fixture;
}

/** Copies what `deno bundle main.ts` reads, with another VERSION and an optional edit. */
async function _copySource(
  to: string,
  version: string,
  edit?: (publishTs: string) => string,
): Promise<string> {
  await Deno.mkdir(to);
  const copied = await run("cp", [
    "-a",
    ...["vat", "ui", "scripts", "main.ts", "deno.json", "deno.lock", "node_modules"].map((p) =>
      ROOT + p
    ),
    to,
  ]);
  assert.equal(copied.code, 0, copied.stderr);
  await Deno.writeTextFile(`${to}/vat/cli/version.ts`, `export const VERSION = "${version}";\n`);
  if (edit) {
    const path = `${to}/vat/repo/publish.ts`;
    const before = await Deno.readTextFile(path);
    const after = edit(before);
    assert.notEqual(after, before, "the edit changed nothing");
    await Deno.writeTextFile(path, after);
  }
  return to;
}

/** A shell script that passes for a vat binary of `version` and fails to start. */
async function _fakeBinary(path: string, version: string): Promise<string> {
  await Deno.writeTextFile(
    path,
    `#!/bin/sh\nif [ "$1" = --version ]; then echo "vat ${version}"; exit 0; fi\n` +
      `echo "this vat cannot start" >&2\nexit 3\n`,
    { mode: 0o755 },
  );
  return path;
}

/** The launcher of an install directory, running, with its output collected. */
interface Launcher {
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  stop(): Promise<Deno.CommandStatus>;
}

function startLauncher(installDir: string, args: string[]): Launcher {
  const proc = spawnCollected(`${installDir}/vat-launcher.sh`, args, {
    env: { VAT_HEALTH_TIMEOUT: "30", VAT_HEALTH_SETTLE: "1" },
  });
  return {
    output: proc.output,
    async waitFor(pattern, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(proc.output())) {
        if (proc.exited || Date.now() > deadline) {
          throw new Error(`the launcher did not print ${pattern}:\n${proc.output()}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop: () => proc.stop(),
  };
}

/** The bytes of release `n` as stored: every distinct chunk object and its indexes. */
async function _wholeReleaseStoredBytes(repoDir: string, n: number): Promise<number> {
  const repo = await Repository.open(new FileStore(repoDir));
  const { manifest } = await repo.readVersion(n);
  const seen = new Set<string>();
  let total = 0;
  for (const disk of Object.values(manifest.disks)) {
    total += disk.index.sizeBytes;
    const index = await repo.readDiskIndex(disk.index);
    for (const [, hash] of index.dataChunks()) {
      const id = toHex(hash);
      if (seen.has(id)) continue;
      seen.add(id);
      total += (await Deno.stat(`${repoDir}/chunks/${id.slice(0, 2)}/${id}`)).size;
    }
  }
  return total;
}

/** What `rsync --no-whole-file` of slot `from` onto a copy of slot `base` moves both ways. */
async function _rsyncBytes(base: string, from: string, scratch: string): Promise<string | null> {
  if ((await run("sh", ["-c", "command -v rsync"])).code !== 0) return null;
  const out: string[] = [];
  for (const z of [[], ["-z"]]) {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
    assert.equal((await run("cp", ["-a", base, scratch])).code, 0);
    const r = await run("rsync", [
      "-a",
      ...z,
      "--no-whole-file",
      "--stats",
      "--exclude",
      ".indexes",
      `${from}/`,
      `${scratch}/`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const num = (label: string) =>
      Number(new RegExp(`${label}: ([\\d,]+)`).exec(r.stdout)![1].replaceAll(",", ""));
    const sent = num("Total bytes sent");
    const received = num("Total bytes received");
    out.push(
      `rsync${z.length ? " -z" : ""}: literal ${formatBytes(num("Literal data"))}, ` +
        `${formatBytes(sent + received)} both ways`,
    );
  }
  return out.join("; ");
}

/** Waits until the daemon of `state` answers and runs vat `version`. */
async function _waitForVersion(state: string, version: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await runVat(["status", "--state", state, "--json"]);
    if (r.code === 0 && JSON.parse(r.stdout).version === version) return;
    if (Date.now() > deadline) throw new Error(`vat ${version} did not come up: ${r.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

Deno.test({
  name: "a release is installed into a slot, started by the launcher, updated by its delta, " +
    "rolled back when it cannot start, and refused when older, signed by an unpinned key, or " +
    "needing a newer vat to update from",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const f = await fixture();
    const dir = await Deno.makeTempDir({ prefix: "vat-update-test-" });
    let launcher: Launcher | null = null;
    try {
      const repo = `${dir}/repo`;
      assert.equal((await run("cp", ["-a", f.repo, repo])).code, 0);
      const state = `${dir}/state`;
      const install = `${state}/install`;
      const readState = async (name: string) =>
        (await Deno.readTextFile(`${install}/${name}`).catch(() => "")).trim();

      // First install, without a daemon: everything is fetched, into slot A.
      const first = JSON.parse(
        (await vatOk([
          "update",
          "apply",
          "--state",
          state,
          "--release-repo",
          repo,
          "--release-key",
          `${f.key}.pub`,
          "--json",
        ])).stdout,
      );
      assert.equal(first.installed, true);
      assert.equal(first.slot, "A");
      assert.equal(first.vatVersion, "0.2.0");
      assert.equal(first.progress.localBytes, 0);
      assert.equal(await readState("next"), "A 3");

      // The launcher starts slot A's own runtime and bundle; its health check makes it current.
      await Deno.writeTextFile(
        `${state}/config.json`,
        JSON.stringify({ releaseRepo: repo, releaseKey: `${f.key}.pub`, updateInterval: 0 }),
      );
      launcher = startLauncher(install, [
        "--headless",
        "--state",
        state,
        "--port",
        "0",
        "--accel",
        "tcg",
      ]);
      await launcher.waitFor(/slot A \(vat 0\.2\.0\) answered its health check/);
      assert.equal(await readState("current"), "A");
      assert.equal(await readState("next"), "");
      const status = JSON.parse((await vatOk(["status", "--state", state, "--json"])).stdout);
      assert.equal(status.version, "0.2.0");
      assert.equal(status.update.runningSlot, "A");
      // The bundle serves the UI from the slot's copy, and carries the demo's init beside it.
      const { url } = JSON.parse(await Deno.readTextFile(`${state}/daemon.json`));
      const ui = await fetch(`${url}ui/vat_ui.js`);
      assert.equal(ui.status, 200);
      assert.equal(await ui.text(), await Deno.readTextFile(`${install}/A/dist/ui/vat_ui.js`));
      assert.equal(
        await Deno.readTextFile(`${install}/A/vat/demo/busybox_appliance_init`),
        await Deno.readTextFile(`${ROOT}vat/demo/busybox_appliance_init`),
      );
      const command = await Deno.readTextFile(`/proc/${status.pid}/cmdline`);
      assert.ok(
        command.startsWith(`${install}/A/deno\0run\0`) && command.includes(`${install}/A/vat.js`),
        `the daemon runs slot A's runtime and bundle: ${command.replaceAll("\0", " ")}`,
      );

      // Release 2 changes one line: the daemon fetches only what changed, then restarts into it.
      const published = JSON.parse(
        (await vatOk([
          "release",
          "publish",
          repo,
          "--key",
          f.key,
          "--source",
          f.srcB,
          "--json",
        ])).stdout,
      );
      assert.equal(published.version, 2);
      const check = JSON.parse(
        (await vatOk(["update", "check", "--state", state, "--json"])).stdout,
      );
      assert.equal(check.installable, true);
      const second = JSON.parse(
        (await vatOk(["update", "apply", "--state", state, "--json"])).stdout,
      );
      assert.equal(second.installed, true, second.reason);
      assert.equal(second.slot, "B");
      const p = second.progress;
      const fetched = p.fetchedStoredBytes + p.indexBytes;
      const whole = await _wholeReleaseStoredBytes(repo, 2);
      const rsync = await _rsyncBytes(`${install}/A`, `${install}/B`, `${dir}/rsync`);
      console.log(
        `update 0.2.0 -> 0.3.0: fetched ${formatBytes(fetched)} (${
          formatBytes(p.fetchedStoredBytes)
        } of chunks, ${formatBytes(p.fetchedBytes)} plain, ${
          formatBytes(p.indexBytes)
        } of indexes) of a whole release of ${formatBytes(whole)} stored (${
          formatBytes(p.totalBytes)
        } of files): ${(100 * fetched / whole).toFixed(3)}%` + (rsync ? `; ${rsync}` : ""),
      );
      assert.ok(fetched < whole / 100, "the update fetches under 1% of the release");
      assert.ok(p.localBytes > 0.99 * p.totalBytes - p.zeroBytes - p.fetchedBytes);
      await launcher.waitFor(/slot B \(vat 0\.3\.0\) answered its health check/);
      assert.equal(await readState("current"), "B");
      assert.equal(
        JSON.parse((await vatOk(["status", "--state", state, "--json"])).stdout).version,
        "0.3.0",
      );

      // Release 3 exits at once: three attempts, then the launcher goes back to B.
      const broken = await _fakeBinary(`${dir}/broken`, "0.4.0");
      await vatOk(["release", "publish", repo, "--key", f.key, "--binary", broken, "--quiet"]);
      const third = JSON.parse(
        (await vatOk(["update", "apply", "--state", state, "--json"])).stdout,
      );
      assert.equal(third.installed, true, third.reason);
      assert.equal(third.slot, "A");
      await launcher.waitFor(/slot A \(release 3\) did not prove itself: rolling back/);
      await _waitForVersion(state, "0.3.0");
      assert.equal(
        (launcher.output().match(/this vat cannot start/g) ?? []).length,
        3,
        "three boot attempts",
      );
      assert.equal(await readState("current"), "B");
      assert.equal(await readState("failed"), "3");
      const afterRollback = JSON.parse(
        (await vatOk(["status", "--state", state, "--json"])).stdout,
      );
      assert.equal(afterRollback.version, "0.3.0", "the old release keeps serving");
      const again = JSON.parse(
        (await vatOk(["update", "apply", "--state", state, "--json"])).stdout,
      );
      assert.equal(again.installed, false);
      assert.match(again.reason, /release 3 failed to start on this VAT/);

      // An older vat is never installed.
      const old = await _fakeBinary(`${dir}/old`, "0.1.0");
      await vatOk(["release", "publish", repo, "--key", f.key, "--binary", old, "--quiet"]);
      const refusedOld = await runVat(["update", "apply", "--state", state]);
      assert.equal(refusedOld.code, 1);
      assert.match(
        refusedOld.stderr,
        /release 4 .* is refused: it is vat 0\.1\.0, older than the running vat 0\.3\.0/,
      );
      assert.equal(await readState("next"), "");

      // Nor one signed by a key the VAT did not pin, though the repository lists it.
      await vatOk(["keygen", "--out", `${dir}/other`]);
      await vatOk(["repo", "add-key", repo, `${dir}/other.pub`, "--key", f.key]);
      const newer = await _fakeBinary(`${dir}/newer`, "0.5.0");
      await vatOk([
        "release",
        "publish",
        repo,
        "--key",
        `${dir}/other`,
        "--binary",
        newer,
        "--quiet",
      ]);
      const refusedKey = await runVat(["update", "check", "--state", state]);
      assert.equal(refusedKey.code, 1);
      assert.match(
        refusedKey.stderr,
        /release 5 .* is refused: it is not signed by the pinned release key/,
      );
      assert.equal(await readState("current"), "B");
      assert.equal(await readState("next"), "");

      // Nor one that needs a newer vat to update from (--min-from).
      const later = await _fakeBinary(`${dir}/later`, "0.6.0");
      await vatOk([
        "release",
        "publish",
        repo,
        "--key",
        f.key,
        "--binary",
        later,
        "--min-from",
        "0.5.0",
        "--quiet",
      ]);
      const refusedMin = await runVat(["update", "apply", "--state", state]);
      assert.equal(refusedMin.code, 1);
      assert.match(refusedMin.stderr, /release 6 \(vat 0\.6\.0\) needs vat 0\.5\.0 or newer/);
      assert.equal(await readState("next"), "");
      assert.equal(
        JSON.parse((await vatOk(["status", "--state", state, "--json"])).stdout).version,
        "0.3.0",
      );

      const stopped = await launcher.stop();
      launcher = null;
      assert.equal(stopped.code, 0);
      let alive = true;
      try {
        Deno.kill(afterRollback.pid, "SIGCONT");
      } catch {
        alive = false;
      }
      assert.equal(alive, false, "the launcher stops its daemon");
    } finally {
      await launcher?.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * A static HTTP server over a repository directory that counts chunk requests, holds
 * each for `delayMs`, and answers 403 to every chunk while `forbid` is on.
 */
function _slowServer(root: string, delayMs: number) {
  const chunkGets: string[] = [];
  const control = { forbid: false };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const key = decodeURIComponent(new URL(req.url).pathname.slice(1));
    if (req.method !== "GET" && req.method !== "HEAD") return new Response("no", { status: 405 });
    if (key.includes("..")) return new Response("no", { status: 400 });
    if (key.startsWith("chunks/")) {
      if (req.method === "GET") chunkGets.push(key);
      if (control.forbid) return new Response("forbidden", { status: 403 });
      await new Promise((r) => setTimeout(r, delayMs));
    }
    try {
      const data = await Deno.readFile(`${root}/${key}`);
      return new Response(req.method === "HEAD" ? null : data, {
        headers: { "content-length": String(data.length) },
      });
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return new Response("not found", { status: 404 });
      if (err instanceof Deno.errors.IsADirectory) return new Response("no", { status: 404 });
      throw err;
    }
  });
  return { url: `http://127.0.0.1:${server.addr.port}/`, chunkGets, control, server };
}

Deno.test({
  name: "a download killed midway resumes without fetching its chunks again, and a 403 is not " +
    "retried forever",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const f = await fixture();
    const dir = await Deno.makeTempDir({ prefix: "vat-update-resume-test-" });
    const served = _slowServer(f.repo, 3);
    try {
      const state = `${dir}/state`;
      const args = [
        "update",
        "apply",
        "--state",
        state,
        "--release-repo",
        served.url,
        "--release-key",
        `${f.key}.pub`,
        "--json",
      ];
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", `${ROOT}main.ts`, ...args],
        stdout: "null",
        stderr: "null",
      }).spawn();
      const deadline = Date.now() + 60_000;
      while (served.chunkGets.length < 1500 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      child.kill("SIGKILL");
      await child.status;
      const firstRun = new Set(served.chunkGets);
      assert.ok(firstRun.size >= 1500, `the first run fetched ${firstRun.size} chunks`);

      // The repository refuses: the updater gives up at once with the server's answer.
      served.control.forbid = true;
      const started = Date.now();
      const refused = await runVat(args);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /403|forbidden|denied/i);
      assert.ok(Date.now() - started < 30_000, "a 403 is not retried");
      assert.equal(await Deno.readTextFile(`${state}/install/next`).catch(() => null), null);

      served.control.forbid = false;
      const before = served.chunkGets.length;
      const resumed = JSON.parse((await vatOk(args)).stdout);
      assert.equal(resumed.installed, true, resumed.reason);
      const secondRun = served.chunkGets.slice(before);
      const again = secondRun.filter((key) => firstRun.has(key));
      console.log(
        `resume: the killed run asked for ${firstRun.size} chunks, the resumed one for ` +
          `${secondRun.length} more, ${again.length} of them again (in flight at the kill); ` +
          `${formatBytes(resumed.progress.cachedBytes)} came from the cache`,
      );
      assert.ok(again.length <= 16, `${again.length} chunks were fetched again`);
      assert.ok(resumed.progress.cachedBytes > 0);
      assert.equal(await Deno.readTextFile(`${state}/install/next`), "A 3\n");
      const release = JSON.parse(await Deno.readTextFile(`${state}/install/A/release.json`));
      assert.equal(release.vatVersion, "0.2.0");
    } finally {
      await served.server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "the daemon checks its release repository by itself and restarts into a new release",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const f = await fixture();
    const dir = await Deno.makeTempDir({ prefix: "vat-update-auto-test-" });
    let launcher: Launcher | null = null;
    try {
      const repo = `${dir}/repo`;
      assert.equal((await run("cp", ["-a", f.repo, repo])).code, 0);
      const state = `${dir}/state`;
      await Deno.mkdir(state);
      await Deno.writeTextFile(
        `${state}/config.json`,
        JSON.stringify({ releaseRepo: repo, releaseKey: `${f.key}.pub`, updateInterval: 1 }),
      );
      await vatOk(["update", "apply", "--state", state]);
      launcher = startLauncher(`${state}/install`, [
        "--headless",
        "--state",
        state,
        "--port",
        "0",
        "--accel",
        "tcg",
      ]);
      await launcher.waitFor(/slot A \(vat 0\.2\.0\) answered its health check/);
      await vatOk(["release", "publish", repo, "--key", f.key, "--source", f.srcB, "--quiet"]);
      // No vat update here: the daemon's own check finds release 2 within a second or so.
      await launcher.waitFor(/slot B \(vat 0\.3\.0\) answered its health check/);
      await _waitForVersion(state, "0.3.0");
      const status = JSON.parse(
        (await vatOk(["update", "status", "--state", state, "--json"])).stdout,
      );
      assert.equal(status.install.current.slot, "B");
      assert.equal(status.install.current.release.release, 2);
      assert.equal(status.lastError, null);
    } finally {
      await launcher?.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
