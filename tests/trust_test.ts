/**
 * The attacks of issue 13 on publisher trust, rollback and freeze, each scripted
 * against a hostile HTTP server (tests/helpers/hostile_server.ts) serving a real
 * repository with the attacker's changes, and a real daemon that must refuse them,
 * say why (naming the key), and change nothing. No guest is booted: the daemon's
 * status (`vat ls --json`) and a refused `vat start` show enough. The data
 * repository's binding of versions to their subscription is checked with real
 * backups and `vat repo verify`.
 */

import assert from "node:assert/strict";
import { keyFingerprint, loadSigningKey } from "../vat/auth/signing_key.ts";
import { signKeyList } from "../vat/repo/key_list.ts";
import { signManifest } from "../vat/repo/manifest.ts";
import { writeImage } from "./helpers/images.ts";
import { startVat, type VatProcess } from "./helpers/processes.ts";
import { type HostileServer, startHostileServer } from "./helpers/hostile_server.ts";
import { runVat, vatOk } from "./helpers/vat_cli.ts";

const MiB = 1024 * 1024;

interface Trust {
  repoId: string;
  keys: { id: string; fingerprint: string }[];
  keySequence: number;
  pinnedBy: string;
  highestVersion: number | null;
  requiredVersion: number | null;
  vouchedVersion: number | null;
  vouchedAt: string | null;
  problem: string | null;
}

interface Status {
  name: string;
  latestVersion: number | null;
  offline: boolean;
  trust: Trust | null;
}

/** A publisher's repository served by a hostile server, and a VAT daemon. */
interface Rig {
  dir: string;
  state: string;
  repo: string;
  server: HostileServer;
  pub: string;
  publish(key: string, fill: number, ...extra: string[]): Promise<void>;
  status(name: string): Promise<Status>;
  restartDaemon(): Promise<void>;
}

async function withRig(fn: (rig: Rig) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vat-trust-" });
  const state = `${dir}/state`;
  const repo = `${dir}/repo`;
  let server: HostileServer | null = null;
  let daemon: VatProcess | null = null;
  const startDaemon = async () => {
    daemon = await startVat(
      ["--headless", "--state", state, "--port", "0", "--prefetch-limit", "0"],
      (out) => out.includes("listening at"),
    );
  };
  try {
    await vatOk(["keygen", "--out", `${dir}/pub`]);
    await vatOk(["repo", "init", repo, "--kind", "appliance", "--publisher", `${dir}/pub.pub`]);
    const publish = async (key: string, fill: number, ...extra: string[]) => {
      await writeImage(`${dir}/disk.raw`, 4 * MiB, [[0, MiB]], fill);
      await vatOk(["publish", repo, "--image", `${dir}/disk.raw`, "--key", key, ...extra]);
    };
    await publish(`${dir}/pub`, 1);
    server = startHostileServer(repo);
    await startDaemon();
    await fn({
      dir,
      state,
      repo,
      server,
      pub: `${dir}/pub`,
      publish,
      async status(name) {
        const all = JSON.parse(
          (await vatOk(["ls", "--state", state, "--json"])).stdout,
        ) as Status[];
        const found = all.find((a) => a.name === name);
        assert.ok(found, `${name} is listed`);
        return found;
      },
      async restartDaemon() {
        await daemon!.stop();
        await startDaemon();
      },
    });
  } finally {
    await (daemon as VatProcess | null)?.stop();
    await (server as HostileServer | null)?.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function pubId(path: string): Promise<string> {
  return (await Deno.readTextFile(`${path}.pub`)).trim();
}

/** Serves every file under `dir` in place of the repository's own (an attacker's copy). */
async function serveCopy(server: HostileServer, dir: string, under = ""): Promise<void> {
  for await (const e of Deno.readDir(`${dir}/${under}`)) {
    const key = under ? `${under}/${e.name}` : e.name;
    if (e.isDirectory) await serveCopy(server, dir, key);
    else server.replace(key, await Deno.readFile(`${dir}/${key}`));
  }
}

/** Whatever the trust status holds but the problem: what an attack must not change. */
function pinned(t: Trust | null) {
  assert.ok(t);
  const { problem: _, vouchedAt: __, ...rest } = t;
  return rest;
}

Deno.test("a key swapped into repo.json and a version signed by it are refused, naming the key", async () => {
  await withRig(async (rig) => {
    const added = await vatOk([
      "appliance",
      "add",
      rig.server.url,
      "--name",
      "office",
      "--state",
      rig.state,
    ]);
    const pubKey = await pubId(rig.pub);
    assert.match(added.stdout, /pinned repository \S+ and its publisher keys on first use/);
    assert.ok(added.stdout.includes(`${pubKey}  ${keyFingerprint(pubKey)}`), added.stdout);
    const before = await rig.status("office");
    assert.equal(before.latestVersion, 1);
    assert.equal(before.trust?.problem, null);
    assert.deepEqual(before.trust?.keys.map((k) => k.id), [pubKey]);

    // The attacker copies the repository, adds its own key to repo.json and publishes
    // version 2 with it (a huge memory size), and the server serves that copy.
    await vatOk(["keygen", "--out", `${rig.dir}/evil`]);
    const evilKey = await pubId(`${rig.dir}/evil`);
    const evil = `${rig.dir}/evil-repo`;
    await new Deno.Command("cp", { args: ["-a", rig.repo, evil] }).output();
    const repoJson = JSON.parse(await Deno.readTextFile(`${evil}/repo.json`));
    repoJson.publisherKeys.push(evilKey);
    await Deno.writeTextFile(`${evil}/repo.json`, JSON.stringify(repoJson));
    await writeImage(`${rig.dir}/evil.raw`, 4 * MiB, [[0, MiB]], 0x66);
    await vatOk([
      "publish",
      evil,
      "--image",
      `${rig.dir}/evil.raw`,
      "--key",
      `${rig.dir}/evil`,
      "--memory",
      "999999",
    ]);
    await serveCopy(rig.server, evil);

    const refusal = new RegExp(
      `version 2: signed by ${evilKey} \\(${
        keyFingerprint(evilKey).replace(/[+/]/g, "\\$&")
      }\\), which is not among the repository's trusted publisher keys`,
    );
    const after = await rig.status("office");
    assert.equal(after.latestVersion, 1, "the forged version is not offered");
    assert.match(after.trust?.problem ?? "", refusal);
    assert.deepEqual(pinned(after.trust), pinned(before.trust), "the pins did not change");
    assert.match(
      (await vatOk(["ls", "--state", rig.state])).stdout,
      /trust problem: version 2: signed by/,
    );
    const start = await runVat(["start", "office", "--state", rig.state]);
    assert.equal(start.code, 1);
    assert.match(start.stderr, refusal);

    // An administrator's pin refuses it at once.
    const strict = await runVat([
      "appliance",
      "add",
      rig.server.url,
      "--name",
      "strict",
      "--publisher",
      `${rig.pub}.pub`,
      "--state",
      rig.state,
    ]);
    assert.equal(strict.code, 1);
    assert.match(strict.stderr, refusal);
    const missing = await runVat([
      "appliance",
      "add",
      rig.server.url,
      "--publisher",
      `${rig.dir}/nope.pub`,
      "--state",
      rig.state,
    ]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /public key \S+nope\.pub does not exist/);
    const names = JSON.parse((await vatOk(["ls", "--state", rig.state, "--json"])).stdout)
      .map((a: Status) => a.name);
    assert.deepEqual(names, ["office"], "nothing was added");

    // Once the server is honest again, all is well.
    rig.server.restore();
    const honest = await rig.status("office");
    assert.equal(honest.latestVersion, 1);
    assert.equal(honest.trust?.problem, null);
  });
});

Deno.test("a rollback (latest set back, the newer version hidden) is refused, after a restart too", async () => {
  await withRig(async (rig) => {
    await vatOk(["appliance", "add", rig.server.url, "--name", "office", "--state", rig.state]);
    await rig.publish(rig.pub, 2);
    // Before this VAT saw version 2, the server hides it, but serves the publisher's
    // fresh statement that vouches for it: withheld.
    rig.server.replace("latest", "1\n");
    rig.server.replace("versions/2/manifest.json", null);
    const withheld = await rig.status("office");
    assert.equal(withheld.latestVersion, 1);
    assert.match(
      withheld.trust?.problem ?? "",
      /vouched on \S+ that version 2 is the newest, but \S+ offers only version 1: the repository withholds newer versions/,
    );
    rig.server.restore();
    const seen = await rig.status("office");
    assert.equal(seen.latestVersion, 2);
    assert.equal(seen.trust?.highestVersion, 2);

    // The highest version accepted survives a restart.
    await rig.restartDaemon();
    rig.server.replace("latest", "1\n");
    rig.server.replace("versions/2/manifest.json", null);
    const refusal =
      /offers version 1 as its newest, but this VAT already accepted version 2: a rollback/;
    const after = await rig.status("office");
    assert.equal(after.latestVersion, 2, "the status keeps what was accepted");
    assert.match(after.trust?.problem ?? "", refusal);
    assert.deepEqual(pinned(after.trust), pinned(seen.trust));
    const start = await runVat(["start", "office", "--state", rig.state]);
    assert.equal(start.code, 1);
    assert.match(start.stderr, refusal);
    const hoard = await runVat(["hoard", "office", "--state", rig.state]);
    assert.equal(hoard.code, 1);
    assert.match(hoard.stderr, refusal);

    // Version 1's (validly signed) manifest served as version 2: refused too.
    rig.server.replace(
      "versions/2/manifest.json",
      await Deno.readFile(`${rig.repo}/versions/1/manifest.json`),
    );
    const swapped = await rig.status("office");
    assert.match(swapped.trust?.problem ?? "", /version 2: manifest claims to be version 1/);
    assert.deepEqual(pinned(swapped.trust), pinned(seen.trust));

    rig.server.restore();
    assert.equal((await rig.status("office")).trust?.problem, null);
  });
});

Deno.test("a frozen repository (an expired freshness statement) is reported while online, not offline", async () => {
  await withRig(async (rig) => {
    await vatOk(["appliance", "add", rig.server.url, "--name", "office", "--state", rig.state]);
    const fresh = await rig.status("office");
    assert.equal(fresh.trust?.vouchedVersion, 1, "publishing vouched for version 1");
    assert.equal(fresh.trust?.problem, null);

    // A statement valid for 1 s, which the VAT sees.
    const short = JSON.parse(
      (await vatOk(["repo", "refresh", rig.repo, "--key", rig.pub, "--expires", "1s", "--json"]))
        .stdout,
    );
    assert.equal((await rig.status("office")).trust?.vouchedAt, short.signedAt);
    const frozen = await Deno.readFile(`${rig.repo}/timestamp.json`);

    // The publisher publishes version 2; a frozen mirror keeps serving the old state.
    await rig.publish(rig.pub, 2);
    rig.server.replace("latest", "1\n");
    rig.server.replace("versions/2/manifest.json", null);
    rig.server.replace("timestamp.json", frozen);
    await new Promise((r) => setTimeout(r, 1500));
    const stale = await rig.status("office");
    assert.equal(stale.latestVersion, 1);
    assert.equal(stale.offline, false);
    assert.equal(
      stale.trust?.problem,
      `the repository has not vouched for its newest version since ${short.signedAt} ` +
        `(the statement expired ${short.expires}): it may be a frozen copy that hides ` +
        `updates; ask its publisher to run vat repo refresh`,
    );
    assert.match(
      (await vatOk(["ls", "--state", rig.state])).stdout,
      /has not vouched for its newest version since/,
    );
    const verify = await runVat(["repo", "verify", rig.server.url]);
    assert.equal(verify.code, 1);
    assert.match(verify.stderr, /the freshness statement expired .*vat repo refresh/);

    // The mirror catches up: version 2 and a fresh statement.
    rig.server.restore();
    const caughtUp = await rig.status("office");
    assert.equal(caughtUp.latestVersion, 2);
    assert.equal(caughtUp.trust?.vouchedVersion, 2);
    assert.equal(caughtUp.trust?.problem, null);

    // Replaying the expired statement changes nothing: the newer one stands.
    rig.server.replace("timestamp.json", frozen);
    assert.equal((await rig.status("office")).trust?.problem, null);

    // Offline, nothing is claimed about freshness.
    await rig.server.close();
    const offline = await rig.status("office");
    assert.equal(offline.offline, true);
    assert.equal(offline.trust?.problem, null);
  });
});

Deno.test("a key rotation signed by a pinned key is followed; one signed by another key is not", async () => {
  await withRig(async (rig) => {
    await vatOk(["appliance", "add", rig.server.url, "--name", "office", "--state", rig.state]);
    const a = await pubId(rig.pub);
    await vatOk(["keygen", "--out", `${rig.dir}/next`]);
    const b = await pubId(`${rig.dir}/next`);

    // Without a current key, no key list is written.
    const unsigned = await runVat(["repo", "add-key", rig.repo, `${rig.dir}/next.pub`]);
    assert.equal(unsigned.code, 2);
    assert.match(unsigned.stderr, /give --key KEY/);

    await vatOk(["repo", "add-key", rig.repo, `${rig.dir}/next.pub`, "--key", rig.pub]);
    await rig.publish(`${rig.dir}/next`, 2);
    const added = await rig.status("office");
    assert.equal(added.latestVersion, 2);
    assert.equal(added.trust?.keySequence, 1);
    assert.deepEqual(added.trust?.keys.map((k) => k.id), [a, b]);
    assert.equal(added.trust?.problem, null);

    // The old key retires (signed by the new one); versions by the new key go on.
    await vatOk(["repo", "remove-key", rig.repo, `${rig.pub}.pub`, "--key", `${rig.dir}/next`]);
    await rig.publish(`${rig.dir}/next`, 3);
    const rotated = await rig.status("office");
    assert.equal(rotated.latestVersion, 3);
    assert.deepEqual(rotated.trust?.keys.map((k) => k.id), [b]);
    assert.equal(rotated.trust?.keySequence, 2);

    // A fresh VAT pinning only the new key (an organisation's image) follows too.
    await vatOk([
      "appliance",
      "add",
      rig.server.url,
      "--name",
      "imaged",
      "--publisher",
      `${rig.dir}/next.pub`,
      "--state",
      rig.state,
    ]);
    assert.equal((await rig.status("imaged")).latestVersion, 3);

    // An attacker's key list 3 (its own key, signed by itself) is not followed.
    await vatOk(["keygen", "--out", `${rig.dir}/evil`]);
    const evil = await pubId(`${rig.dir}/evil`);
    const id = JSON.parse(await Deno.readTextFile(`${rig.repo}/repo.json`)).id;
    rig.server.replace(
      "keys/3.json",
      signKeyList({
        format: 1,
        repoId: id,
        sequence: 3,
        publisherKeys: [evil],
        latest: 3,
        createdAt: new Date().toISOString(),
        signer: evil,
      }, await loadSigningKey(`${rig.dir}/evil`)),
    );
    const forged = await rig.status("office");
    assert.match(
      forged.trust?.problem ?? "",
      new RegExp(
        `key list 3 \\(keys/3\\.json\\): signed by ${evil} .*this VAT keeps trusting ${b}`,
      ),
    );
    assert.deepEqual(pinned(forged.trust), pinned(rotated.trust));
    const verify = await runVat(["repo", "verify", rig.server.url]);
    assert.equal(verify.code, 1);
    assert.match(verify.stderr, new RegExp(`key list 3 \\(keys/3\\.json\\): signed by ${evil}`));
    assert.equal((await runVat(["repo", "verify", rig.repo])).code, 0, "the real one verifies");
  });
});

Deno.test("a data repository version copied into another subscription, or signed by the operator, is refused", async () => {
  const { deriveUserKey } = await import("../vat/auth/user_key.ts");
  const { CowOverlay } = await import("../vat/disk/cow_overlay.ts");
  const { FileStore } = await import("../vat/repo/store_file.ts");
  const { RateLimiter } = await import("../vat/rate_limiter.ts");
  const { DataRepository } = await import("../vat/backup/data_repository.ts");
  const { SubscriptionBackup } = await import("../vat/backup/subscription_backup.ts");
  const dir = await Deno.makeTempDir({ prefix: "vat-trust-data-" });
  const secret = new Uint8Array(32).fill(9);
  const key = deriveUserKey(secret, `${dir}/user.key`);
  await Deno.writeTextFile(
    `${dir}/user.key`,
    JSON.stringify({
      type: "vat-user-key",
      format: 1,
      secret: Buffer.from(secret).toString("base64url"),
    }),
    { mode: 0o600 },
  );
  const repoDir = `${dir}/data`;
  const data = await DataRepository.open(new FileStore(repoDir), key, { create: true });
  const opened: { close(): void }[] = [];
  try {
    // Real backups: "desk" gets two versions, "lab" one.
    const CHUNK = 4096;
    const base = {
      sizeBytes: 16 * CHUNK,
      readOnly: true,
      preferredBlockBytes: CHUNK,
      readChunk: () => Promise.resolve(null),
      read: (_o: number, into: Uint8Array) => Promise.resolve(void into.fill(0)),
      write: () => Promise.reject(new Error("read-only")),
      flush: () => Promise.resolve(),
      trim: () => Promise.reject(new Error("read-only")),
      writeZeroes: () => Promise.reject(new Error("read-only")),
      close: () => Promise.resolve(),
    };
    for (const [name, versions] of [["desk", 2], ["lab", 1]] as const) {
      const backup = await SubscriptionBackup.open({
        data,
        dir: `${dir}/vat/${name}`,
        name,
        vatId: "vat-1",
        limiter: new RateLimiter(0),
      });
      opened.push(backup);
      await backup.prepareStart({ hasDisk: false, dirty: false });
      const overlay = await CowOverlay.open({ base, path: `${dir}/${name}.overlay` });
      for (let v = 1; v <= versions; v++) {
        await overlay.write(v * CHUNK, new Uint8Array(CHUNK).fill(name === "desk" ? v : 0x40 + v));
        await backup.snapshot(overlay, "stop", { memoryMiB: 64, cpus: 1 });
        await backup.upload();
      }
      await backup.releaseIfIdle();
      await overlay.close();
    }
    assert.equal(
      (await runVat(["repo", "verify", repoDir, "--user-key", `${dir}/user.key`])).code,
      0,
    );

    // The storage operator copies desk's version 2 into lab as lab's version 2.
    const desk = `${repoDir}/subscriptions/desk/versions/2`;
    const lab = `${repoDir}/subscriptions/lab/versions/2`;
    await Deno.mkdir(lab, { recursive: true });
    for await (const e of Deno.readDir(desk)) {
      await Deno.copyFile(`${desk}/${e.name}`, `${lab}/${e.name}`);
    }
    await Deno.writeTextFile(`${repoDir}/subscriptions/lab/latest`, "2\n");
    const copied = /version 2 of subscription "lab": the manifest belongs to subscription "desk"/;
    await assert.rejects(() => data.subscription("lab").readVersion(2), copied);
    const verify = await runVat(["repo", "verify", repoDir, "--user-key", `${dir}/user.key`]);
    assert.equal(verify.code, 1);
    assert.match(verify.stderr, copied);
    // A fresh VAT of "lab" does not restore it.
    const fresh = await SubscriptionBackup.open({
      data,
      dir: `${dir}/vat2/lab`,
      name: "lab",
      vatId: "vat-2",
      limiter: new RateLimiter(0),
    });
    opened.push(fresh);
    await assert.rejects(() => fresh.prepareStart({ hasDisk: false, dirty: false }), copied);

    // The operator adds its own key to repo.json and signs a version 2 of lab with it.
    await vatOk(["keygen", "--out", `${dir}/operator`]);
    const operator = await loadSigningKey(`${dir}/operator`);
    const repoJson = JSON.parse(await Deno.readTextFile(`${repoDir}/repo.json`));
    repoJson.publisherKeys.push(operator.publicKeyId);
    await Deno.writeTextFile(`${repoDir}/repo.json`, JSON.stringify(repoJson));
    const lab1 = (await data.subscription("lab").readVersion(1)).manifest;
    await Deno.writeFile(
      `${lab}/manifest.json`,
      signManifest({ ...lab1, version: 2, parent: 1, publisher: operator.publicKeyId }, operator),
    );
    const reopened = await DataRepository.open(new FileStore(repoDir), key);
    await assert.rejects(
      () => reopened.subscription("lab").readVersion(2),
      new RegExp(`version 2 of subscription "lab": signed by ${operator.publicKeyId}`),
    );
  } finally {
    for (const b of opened) b.close();
    await Deno.remove(dir, { recursive: true });
  }
});
