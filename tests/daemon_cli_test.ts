/**
 * The daemon and the CLI that talks to it, without running a VM: adding and listing
 * appliances, the access token on every route, one daemon per state directory, and
 * the refusals (delete without --yes, unknown names, operations on stopped appliances).
 */

import assert from "node:assert/strict";
import { writeImage } from "./helpers/images.ts";
import { startVat } from "./helpers/processes.ts";
import { runVat, vatOk } from "./helpers/vat_cli.ts";

const MiB = 1024 * 1024;

Deno.test("the daemon serves the CLI, and refuses requests without its token", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-daemon-test-" });
  const state = `${dir}/state`;
  await Deno.mkdir(state);
  await Deno.writeTextFile(`${state}/config.json`, JSON.stringify({ cacheSize: "3G" }));
  const daemon = await startVat(
    ["--headless", "--state", state, "--port", "0"],
    (out) => out.includes("listening at"),
  );
  try {
    const url = /listening at (\S+)/.exec(daemon.output())![1];
    await vatOk(["keygen", "--out", `${dir}/key`]);
    await vatOk(["repo", "init", `${dir}/office`, "--kind", "appliance"]);
    await writeImage(`${dir}/disk.raw`, 4 * MiB, [[0, MiB]]);
    await vatOk(["publish", `${dir}/office`, "--image", `${dir}/disk.raw`, "--key", `${dir}/key`]);

    assert.match((await vatOk(["ls", "--state", state])).stdout, /no appliances yet/);
    const added = JSON.parse(
      (await vatOk(["appliance", "add", `${dir}/office`, "--state", state, "--json"])).stdout,
    );
    assert.equal(added.name, "office");
    assert.equal(added.state, "stopped");
    assert.equal(added.latestVersion, 1);
    assert.equal(added.subscribed, false);
    const again = await runVat(["appliance", "add", `${dir}/office`, "--state", state]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists/);
    const missing = await runVat(["appliance", "add", `${dir}/nothing`, "--state", state]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no vat repository at/);

    const listed = JSON.parse((await vatOk(["ls", "--state", state, "--json"])).stdout);
    assert.deepEqual(listed.map((a: { name: string }) => a.name), ["office"]);
    const status = JSON.parse((await vatOk(["status", "--state", state, "--json"])).stdout);
    assert.equal(status.appliances.length, 1);
    assert.equal(status.cache.budgetBytes, 3 * 1024 ** 3, "config.json sets the cache size");

    const noYes = await runVat(["delete", "office", "--state", state]);
    assert.equal(noYes.code, 2);
    assert.match(noYes.stderr, /run again with --yes/);
    const stopped = await runVat(["stop", "office", "--state", state]);
    assert.equal(stopped.code, 2);
    assert.match(stopped.stderr, /is not running/);
    const unknown = await runVat(["start", "nosuch", "--state", state]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no appliance called "nosuch"/);

    // Every route, the event stream included, needs the token.
    for (
      const [method, path] of [
        ["GET", "api/status"],
        ["GET", "api/appliances"],
        ["GET", "api/events"],
        ["POST", "api/appliances/office/start"],
        ["DELETE", "api/appliances/office?confirm=office"],
        ["GET", "api/appliances/office/console"],
      ]
    ) {
      for (const auth of [undefined, "Bearer wrong-token"]) {
        const res = await fetch(`${url}${path}`, {
          method,
          headers: auth ? { authorization: auth } : {},
        });
        assert.equal(res.status, 401, `${method} ${path} with ${auth ?? "no token"}`);
        await res.body?.cancel();
      }
    }
    const token = (await Deno.readTextFile(`${state}/token`)).trim();
    assert.equal((await Deno.stat(`${state}/token`)).mode! & 0o777, 0o600);
    const events = await fetch(`${url}api/events`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const reader = events.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /event: status\ndata: \[\{"name":"office"/);
    await reader.cancel();

    const second = await runVat(["--headless", "--state", state, "--port", "0"]);
    assert.equal(second.code, 2);
    assert.match(second.stderr, /already runs for/);

    await vatOk(["delete", "office", "--yes", "--state", state]);
    assert.deepEqual(JSON.parse((await vatOk(["ls", "--state", state, "--json"])).stdout), []);
  } finally {
    await daemon.stop();
    await Deno.remove(dir, { recursive: true });
  }
  const gone = await runVat(["ls", "--state", state]);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /no vat daemon is running for/);
});

Deno.test("the daemon refuses a config file it does not understand", async () => {
  const state = await Deno.makeTempDir({ prefix: "vat-daemon-config-" });
  try {
    await Deno.writeTextFile(`${state}/config.json`, JSON.stringify({ port: 0, cachesize: "1G" }));
    const bad = await runVat(["--headless", "--state", state]);
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /config\.json: unknown settings cachesize \(known: port, hostname, cacheSize, prefetchLimit, accel, releaseRepo, releaseKey, installDir, updateInterval, directory\)/,
    );
    await Deno.writeTextFile(`${state}/config.json`, "{ not json");
    const broken = await runVat(["--headless", "--state", state]);
    assert.equal(broken.code, 2);
    assert.match(broken.stderr, /config\.json is not valid JSON/);
    await Deno.writeTextFile(`${state}/config.json`, JSON.stringify({ accel: "fast" }));
    const accel = await runVat(["--headless", "--state", state]);
    assert.equal(accel.code, 2);
    assert.match(accel.stderr, /config\.json: "accel" must be one of auto, kvm, tcg, not "fast"/);
    await Deno.writeTextFile(`${state}/config.json`, JSON.stringify({ accel: "tcg" }));
    const flag = await runVat(["--headless", "--state", state, "--accel", "kvm2"]);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /--accel must be one of auto, kvm, tcg, not "kvm2"/);
    await Deno.writeTextFile(`${state}/config.json`, JSON.stringify({ releaseRepo: "/r" }));
    const halfUpdate = await runVat(["--headless", "--state", state]);
    assert.equal(halfUpdate.code, 2);
    assert.match(halfUpdate.stderr, /"releaseRepo" and "releaseKey" go together/);
  } finally {
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("a state directory the daemon cannot use is one clear line and exit 1, not a stack", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-daemon-state-" });
  try {
    // The tests run as root, whom permissions do not stop: a file where a directory
    // must be, and a directory where the database file must be, stop everyone.
    await Deno.writeTextFile(`${dir}/file`, "");
    const notDir = await runVat(["--headless", "--state", `${dir}/file/state`, "--port", "0"]);
    assert.equal(notDir.code, 1);
    assert.match(
      notDir.stderr,
      /^vat daemon: Not a directory \(os error 20\): \w+ '.*\/file\/state.*'\n$/,
    );
    await Deno.mkdir(`${dir}/state/vat.sqlite`, { recursive: true });
    const noDb = await runVat(["--headless", "--state", `${dir}/state`, "--port", "0"]);
    assert.equal(noDb.code, 1);
    assert.match(
      noDb.stderr,
      /vat daemon: cannot open .*\/state\/vat\.sqlite: unable to open database file; it and its directory must be writable by this user\n$/,
    );
    assert.doesNotMatch(noDb.stderr, /Uncaught| {4}at /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
