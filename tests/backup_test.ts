/**
 * Backups end to end, with real QEMU guests (docs/BACKUP.md): a guest's file reaches
 * the encrypted data repository and a second, fresh VAT state directory starts the
 * subscription with it; undo brings old content back and lists every version; an
 * upload killed with SIGKILL resumes and the repository verifies; two VATs contend for
 * one subscription; a wrong key is refused before anything is written.
 */

import assert from "node:assert/strict";
import { buildBusyboxAppliance } from "../vat/demo/busybox_appliance.ts";
import { Guest, publishAppliance, qemuProcessesUnder } from "./helpers/guest.ts";
import { startVat, type VatProcess } from "./helpers/processes.ts";
import { runVat, vatOk } from "./helpers/vat_cli.ts";
import { sameBytes } from "./helpers/images.ts";

interface Backup {
  name: string;
  enabled: boolean;
  series: string;
  pendingBytes: number;
  pendingSnapshots: number;
  uploading: boolean;
  lastVersion: number | null;
  error: string | null;
  forkNote: string | null;
}

interface Rig {
  dir: string;
  repo: string;
  data: string;
  userKey: string;
  daemons: VatProcess[];
  vat(state: string, ...extra: string[]): Promise<VatProcess>;
}

async function withRig(fn: (rig: Rig) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vat-backup-e2e-" });
  const rig: Rig = {
    dir,
    repo: `${dir}/repo`,
    data: `${dir}/data`,
    userKey: `${dir}/user.key`,
    daemons: [],
    async vat(state, ...extra) {
      const daemon = await startVat(
        [
          "--headless",
          "--state",
          state,
          "--port",
          "0",
          "--data-repo",
          rig.data,
          "--user-key",
          rig.userKey,
          "--snapshot-interval",
          "3600",
          ...extra,
        ],
        (out) => out.includes("listening at"),
      );
      rig.daemons.push(daemon);
      return daemon;
    },
  };
  try {
    await vatOk(["keygen", "--out", `${dir}/publisher.key`]);
    await vatOk(["keygen", "--user", "--out", rig.userKey]);
    await vatOk(["repo", "init", rig.repo, "--kind", "appliance"]);
    await publishAppliance(rig.repo, `${dir}/publisher.key`, await buildBusyboxAppliance());
    await fn(rig);
  } finally {
    for (const d of rig.daemons) await d.stop().catch(() => {});
    const left = await qemuProcessesUnder(dir);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    assert.equal(left, "", "no QEMU left behind");
  }
}

async function backupOf(state: string, name = "desk"): Promise<Backup> {
  const all = JSON.parse((await vatOk(["backup", "status", "--state", state, "--json"])).stdout);
  return all.find((b: Backup) => b.name === name);
}

/** Waits until nothing of `name` is left to upload. */
async function drained(state: string, name = "desk", timeoutMs = 60_000): Promise<Backup> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const b = await backupOf(state, name);
    if (b.pendingBytes === 0 && b.pendingSnapshots === 0 && !b.uploading) return b;
    if (Date.now() > deadline) throw new Error(`backup never drained: ${JSON.stringify(b)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** Boots the guest (waiting for this boot's VAT-READY), asks it `commands`, stops it. */
async function bootAndAsk(state: string, commands: string[]): Promise<string[]> {
  const guest = new Guest(state, "desk");
  const boots = ((await guest.log()).match(/VAT-READY/g) ?? []).length;
  await vatOk(["start", "desk", "--state", state]);
  await guest.waitFor(/VAT-READY/, boots + 1);
  const replies: string[] = [];
  for (const c of commands) replies.push(await guest.ask(c));
  await vatOk(["stop", "desk", "--state", state]);
  return replies;
}

async function grep(dir: string, text: string): Promise<string[]> {
  const { stdout } = await new Deno.Command("grep", {
    args: ["-rl", "--binary-files=text", text, dir],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(stdout).split("\n").filter(Boolean);
}

Deno.test("backup: a fresh VAT restores the user's file; undo brings old content back; no plaintext", async () => {
  await withRig(async (rig) => {
    const a = `${rig.dir}/vat-a`;
    await rig.vat(a);
    await vatOk(["appliance", "add", rig.repo, "--name", "desk", "--state", a]);
    const marker = "backup-marker-" + crypto.randomUUID();
    assert.deepEqual(await bootAndAsk(a, [`write user note first ${marker}`]), [
      "VAT-REPLY write ok",
    ]);
    const first = await drained(a);
    assert.equal(first.enabled, true);
    assert.equal(first.error, null);
    assert.ok(first.lastVersion !== null && first.lastVersion >= 1);
    // Version 1 is the appliance's initial user disk, byte for byte.
    await vatOk(["export", rig.repo, "--disk", "user", `${rig.dir}/initial.raw`, "--quiet"]);
    await vatOk([
      "export",
      `${rig.data}@1`,
      "--user-key",
      rig.userKey,
      "--subscription",
      "desk",
      `${rig.dir}/v1.raw`,
      "--quiet",
    ]);
    assert.ok(await sameBytes(`${rig.dir}/initial.raw`, `${rig.dir}/v1.raw`));
    // Encrypted: neither the guest's text nor the initial disk's is in the repository.
    assert.deepEqual(await grep(rig.data, marker), []);
    assert.deepEqual(await grep(rig.data, "user-initial"), []);

    await bootAndAsk(a, ["write user note second"]);
    const second = await drained(a);
    assert.ok(second.lastVersion! > first.lastVersion!);
    await rig.daemons.pop()!.stop();

    // A fresh VAT (empty state, empty caches) given the same repository and key.
    const b = `${rig.dir}/vat-b`;
    await rig.vat(b);
    await vatOk(["appliance", "add", rig.repo, "--name", "desk", "--state", b]);
    assert.deepEqual(await bootAndAsk(b, ["read user note"]), ["VAT-REPLY read second"]);
    await drained(b);

    const undone = JSON.parse(
      (await vatOk(["undo", "desk", "--to", String(first.lastVersion), "--state", b, "--json"]))
        .stdout,
    );
    assert.equal(undone.state, "stopped");
    assert.deepEqual(await bootAndAsk(b, ["read user note"]), [`VAT-REPLY read first ${marker}`]);
    await drained(b);
    const versions = JSON.parse(
      (await vatOk(["snapshots", "desk", "--state", b, "--json"])).stdout,
    );
    const numbers = versions.map((v: { version: number }) => v.version);
    assert.ok(numbers.includes(second.lastVersion), "the undone-from version is still listed");
    const undo = versions.find((v: { undoneTo: number | null }) => v.undoneTo !== null);
    assert.equal(undo.undoneTo, first.lastVersion);
    const plain = (await vatOk(["snapshots", "desk", "--state", b])).stdout;
    assert.match(plain, new RegExp(`undo to version ${first.lastVersion}`));

    const check = await vatOk(["repo", "verify", rig.data, "--user-key", rig.userKey, "--all"]);
    assert.match(check.stdout, /^ok: /m);
  });
});

Deno.test("backup: an upload killed with SIGKILL resumes after a restart and the repository verifies", async () => {
  await withRig(async (rig) => {
    const a = `${rig.dir}/vat-a`;
    // 4 Mbit/s: 6 MiB takes about 12 s, so the kill lands mid-upload.
    let daemon = await rig.vat(a, "--backup-limit", "4M");
    await vatOk(["appliance", "add", rig.repo, "--name", "desk", "--state", a]);
    const [filled] = await bootAndAsk(a, ["fill user big 6"]);
    const md5 = /^VAT-REPLY fill ([0-9a-f]{32})$/.exec(filled)![1];
    const deadline = Date.now() + 30_000;
    let seen: Backup;
    for (;;) {
      seen = await backupOf(a);
      if (seen.uploading && seen.pendingBytes < 5.5 * 1024 * 1024) break;
      assert.ok(Date.now() < deadline, `upload never started: ${JSON.stringify(seen)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(seen.pendingBytes > 0);
    await daemon.stop("SIGKILL");
    rig.daemons.splice(rig.daemons.indexOf(daemon), 1);

    daemon = await rig.vat(a);
    // `backup now --wait` answers once nothing is left to upload.
    const waited = JSON.parse(
      (await vatOk(["backup", "now", "desk", "--wait", "--state", a, "--json"])).stdout,
    );
    assert.equal(waited.pendingBytes, 0);
    const done = await drained(a);
    assert.equal(done.error, null);
    const verify = await vatOk(["repo", "verify", rig.data, "--user-key", rig.userKey, "--all"]);
    assert.match(verify.stdout, /^ok: /m);
    const list = JSON.parse((await vatOk(["snapshots", "desk", "--state", a, "--json"])).stdout);
    const ids = list.filter((v: { version: number | null }) => v.version !== null);
    assert.equal(new Set(ids.map((v: { version: number }) => v.version)).size, ids.length);
    await daemon.stop();
    rig.daemons.splice(rig.daemons.indexOf(daemon), 1);

    const b = `${rig.dir}/vat-b`;
    await rig.vat(b);
    await vatOk(["appliance", "add", rig.repo, "--name", "desk", "--state", b]);
    assert.deepEqual(await bootAndAsk(b, ["md5 user big"]), [`VAT-REPLY md5 ${md5}`]);
  });
});

Deno.test("backup: two VATs contend for one subscription; exactly one holds it; a wrong key is refused", async () => {
  await withRig(async (rig) => {
    const a = `${rig.dir}/vat-a`;
    const b = `${rig.dir}/vat-b`;
    // A short lease: A's must be renewed while it runs for B to stay refused.
    await rig.vat(a, "--lease-ttl", "3");
    await rig.vat(b, "--lease-ttl", "3");
    for (const s of [a, b]) {
      await vatOk(["appliance", "add", rig.repo, "--name", "desk", "--state", s]);
    }
    await vatOk(["start", "desk", "--state", a]);
    await new Guest(a, "desk").waitFor(/VAT-READY/, 1);
    await new Promise((r) => setTimeout(r, 4000));
    const refused = await runVat(["start", "desk", "--state", b]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /"desk" is in use on another VAT .*--take-over.*--fork/);
    // B continues in a fork of its own; A keeps the subscription.
    const forked = JSON.parse(
      (await vatOk(["start", "desk", "--fork", "--state", b, "--json"])).stdout,
    );
    assert.match(forked.backup.series, /^desk-fork-/);
    await new Guest(b, "desk").waitFor(/VAT-READY/, 1);
    await vatOk(["stop", "desk", "--state", b]);
    await vatOk(["stop", "desk", "--state", a]);
    assert.equal((await drained(a)).series, "desk");
    assert.match((await drained(b)).series, /^desk-fork-/);

    // A wrong key: the daemon says so and exits; the repository is unchanged.
    await vatOk(["keygen", "--user", "--out", `${rig.dir}/other.key`]);
    const before = await new Deno.Command("sh", {
      args: ["-c", `find ${rig.data} -type f | sort | xargs sha256sum`],
      stdout: "piped",
    }).output();
    const wrong = await runVat([
      "--headless",
      "--state",
      `${rig.dir}/vat-c`,
      "--port",
      "0",
      "--data-repo",
      rig.data,
      "--user-key",
      `${rig.dir}/other.key`,
    ]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /does not open the data repository/);
    const after = await new Deno.Command("sh", {
      args: ["-c", `find ${rig.data} -type f | sort | xargs sha256sum`],
      stdout: "piped",
    }).output();
    assert.equal(new TextDecoder().decode(after.stdout), new TextDecoder().decode(before.stdout));
  });
});

Deno.test("backup: with the data repository unreachable the VAT keeps working, queues, and drains when it returns", async () => {
  await withRig(async (rig) => {
    const served = `${rig.dir}/served`;
    await Deno.mkdir(served);
    const keyId = JSON.parse(
      (await vatOk(["keygen", "--user", "--out", `${rig.dir}/u2.key`, "--json"])).stdout,
    ).signingKey;
    rig.userKey = `${rig.dir}/u2.key`;
    let server: VatProcess | null = null;
    const serve = async (port: number) => {
      server = await startVat(
        ["serve", "--root", served, "--listen", `127.0.0.1:${port}`, "--allow-key", keyId],
        (out) => /serving .* at http/.test(out),
      );
      return Number(/at http:\/\/127\.0\.0\.1:(\d+)/.exec(server.output())![1]);
    };
    try {
      const port = await serve(0);
      rig.data = `http://127.0.0.1:${port}/data`;
      const a = `${rig.dir}/vat-a`;
      await rig.vat(a);
      await vatOk(["appliance", "add", rig.repo, "--name", "desk", "--state", a]);
      await bootAndAsk(a, ["write user note online"]);
      const online = await drained(a);

      await server!.stop();
      server = null;
      // Offline: the appliance starts on its local disk; the changes wait.
      assert.deepEqual(await bootAndAsk(a, ["read user note", "write user note offline"]), [
        "VAT-REPLY read online",
        "VAT-REPLY write ok",
      ]);
      const waiting = await backupOf(a);
      assert.ok(waiting.pendingBytes > 0 || waiting.pendingSnapshots > 0, JSON.stringify(waiting));
      assert.equal(waiting.lastVersion, online.lastVersion);
      // Deleting now would lose them: refused, saying how to send them or to insist.
      const refused = await runVat(["delete", "desk", "--yes", "--state", a]);
      assert.equal(refused.code, 1);
      assert.match(
        refused.stderr,
        /"desk" has [\d.]+ (B|KiB|MiB) of changes not yet backed up \(vat backup now desk --wait sends them\); .*--discard-unsent/,
      );

      // Back on the same address: the uploader finds it by itself.
      await serve(port);
      const back = await drained(a, "desk", 60_000);
      assert.ok(back.lastVersion! > online.lastVersion!);
      assert.equal(back.series, "desk");
      const verify = await vatOk(["repo", "verify", `${served}/data`, "--user-key", rig.userKey]);
      assert.match(verify.stdout, /^ok: /m);
      // All sent: deleting needs no more than --yes.
      await vatOk(["delete", "desk", "--yes", "--state", a]);
    } finally {
      await (server as VatProcess | null)?.stop();
    }
  });
});
