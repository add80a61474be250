/**
 * Users end to end, with real QEMU (TCG) and the real CLI: an administrator adds two
 * users with different entitlements on a directory served by `vat serve`; alice logs
 * in on VAT 1, writes a file in her appliance and logs out ("safe to leave"); bob logs
 * in on VAT 1 and sees only his appliance (403 on hers); alice finds her file on a
 * fresh VAT 2, with the appliance she added and hoarded on VAT 1 (her profile), and
 * changes her password there; with the directory stopped, VAT 1 lets
 * her in offline with the password last used there (a wrong one is refused and
 * slowed); with the directory back, the old password is refused and the new one works;
 * disabled, she is logged out at VAT 1's next contact with the directory and her
 * running appliance is suspended; a revoked appliance goes, and a grant brings it back.
 */

import assert from "node:assert/strict";
import { buildBusyboxAppliance } from "../vat/demo/busybox_appliance.ts";
import { Guest, publishAppliance, qemuProcessesUnder } from "./helpers/guest.ts";
import { startVat, type VatProcess } from "./helpers/processes.ts";
import { runVat, vatOk } from "./helpers/vat_cli.ts";

interface WhoAmI {
  user: { name: string; offline: boolean } | null;
  leaving: { name: string; pendingBytes: number; safe: boolean }[];
}

const whoami = async (state: string): Promise<WhoAmI> =>
  JSON.parse((await vatOk(["whoami", "--state", state, "--json"])).stdout);
const names = async (state: string): Promise<string[]> =>
  JSON.parse((await vatOk(["ls", "--state", state, "--json"])).stdout).map((a: { name: string }) =>
    a.name
  );

async function api(state: string, method: string, path: string, body?: unknown) {
  const info = JSON.parse(await Deno.readTextFile(`${state}/daemon.json`));
  const token = (await Deno.readTextFile(`${state}/token`)).trim();
  const res = await fetch(new URL(path, info.url), {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

Deno.test("users: entitlements, per-user state, a fresh VAT, offline login, password change, disable", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-users-e2e-" });
  const served = `${dir}/served`;
  const [s1, s2] = [`${dir}/s1`, `${dir}/s2`];
  const processes: VatProcess[] = [];
  let server: VatProcess | null = null;
  const serve = async (port: number) => {
    server = await startVat(
      [
        "serve",
        "--root",
        served,
        "--listen",
        `127.0.0.1:${port}`,
        "--allow-key",
        `${dir}/admin.pub`,
      ],
      (out) => /serving .* at http/.test(out),
    );
    return Number(/at http:\/\/127\.0\.0\.1:(\d+)/.exec(server.output())![1]);
  };
  const daemon = async (state: string) => {
    const p = await startVat(
      [
        "--headless",
        "--state",
        state,
        "--port",
        "0",
        "--prefetch-limit",
        "0",
        "--directory",
        directory,
        "--directory-check-interval",
        "1",
      ],
      (out) => out.includes("listening at"),
      { env: { VAT_ACCEL: "tcg" } },
    );
    processes.push(p);
    return p;
  };
  let directory = "";
  try {
    await Deno.mkdir(served);
    await vatOk(["keygen", "--out", `${dir}/admin`]);
    for (
      const [file, text] of [["pw", "first secret"], ["pw2", "second secret"], ["bad", "nope"]]
    ) {
      await Deno.writeTextFile(`${dir}/${file}`, text + "\n");
    }
    const port = await serve(0);
    const url = `http://127.0.0.1:${port}/`;
    const a = await buildBusyboxAppliance();
    for (const name of ["desk", "lab"]) {
      await vatOk([
        "repo",
        "init",
        `${url}apps/${name}`,
        "--kind",
        "appliance",
        "--key",
        `${dir}/admin`,
      ]);
      await publishAppliance(`${url}apps/${name}`, `${dir}/admin`, a);
    }
    directory = `${url}dir/`;
    const admin = ["--directory", directory, "--key", `${dir}/admin`];
    await vatOk(["directory", "init", directory, "--key", `${dir}/admin`]);
    for (const [user, app] of [["alice", "desk"], ["bob", "lab"]]) {
      await vatOk([
        "user",
        "add",
        user,
        ...admin,
        "--password-file",
        `${dir}/pw`,
        "--data-repo",
        `${url}data/${user}/`,
      ]);
      await vatOk(["user", "grant", user, `${url}apps/${app}`, ...admin]);
    }

    // VAT 1: alice sees her appliance only, writes a file, logs out.
    await daemon(s1);
    assert.equal((await whoami(s1)).user, null);
    await vatOk(["login", "alice", "--password-file", `${dir}/pw`, "--state", s1]);
    assert.deepEqual(await names(s1), ["desk"]);
    // Her live status stream, which must end when she logs out.
    const info1 = JSON.parse(await Deno.readTextFile(`${s1}/daemon.json`));
    const events = await fetch(new URL("/api/events", info1.url), {
      headers: { authorization: `Bearer ${(await Deno.readTextFile(`${s1}/token`)).trim()}` },
    });
    const eventsText = (async () => {
      let text = "";
      for await (const piece of events.body!.pipeThrough(new TextDecoderStream())) text += piece;
      return text;
    })();
    const marker = "users-e2e-" + crypto.randomUUID();
    await vatOk(["start", "desk", "--state", s1]);
    const desk1 = new Guest(s1, "desk");
    await desk1.waitFor(/VAT-READY/, 1);
    assert.equal(await desk1.ask(`write user note ${marker}`), "VAT-REPLY write ok");
    // One she adds by hand, kept for offline use: her profile carries both to any VAT.
    await vatOk(["appliance", "add", `${url}apps/lab`, "--name", "games", "--state", s1]);
    await vatOk(["hoard", "games", "--state", s1]);
    const out = await vatOk(["logout", "--wait", "--state", s1]);
    assert.match(out.stdout, /alice logged out; safe to leave/);
    const streamed = await Promise.race([
      eventsText,
      new Promise<string>((_, reject) =>
        setTimeout(() => reject(new Error("her event stream outlived her logout")), 15_000)
      ),
    ]);
    assert.match(streamed, /"name":"desk"/);
    assert.equal(await qemuProcessesUnder(s1), "", "her appliance stopped");

    // Bob on the same VAT: his appliance only; hers is forbidden, not just unknown.
    const wrong = await runVat(["login", "bob", "--password-file", `${dir}/bad`, "--state", s1]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /wrong name or password/);
    await new Promise((r) => setTimeout(r, 1100)); // the delay after a failure
    await vatOk(["login", "bob", "--password-file", `${dir}/pw`, "--state", s1]);
    assert.deepEqual(await names(s1), ["lab"]);
    const forbidden = await api(s1, "GET", "/api/appliances/desk");
    assert.equal(forbidden.status, 403);
    assert.match(forbidden.body.error, /belongs to another user/);
    assert.equal((await api(s1, "POST", "/api/appliances/desk/start")).status, 403);
    const busy = await runVat(["login", "alice", "--password-file", `${dir}/pw`, "--state", s1]);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, /bob is logged in on this VAT; they must log out first/);
    await vatOk(["logout", "--wait", "--state", s1]);

    // VAT 2, fresh: alice's appliance and file follow her; she changes her password.
    await daemon(s2);
    await vatOk(["login", "alice", "--password-file", `${dir}/pw`, "--state", s2]);
    assert.deepEqual(await names(s2), ["desk", "games"]);
    const hoardDeadline = Date.now() + 30_000;
    for (;;) {
      const all = JSON.parse((await vatOk(["ls", "--state", s2, "--json"])).stdout);
      const games = all.find((x: { name: string }) => x.name === "games");
      if (games.hoarded && games.safeOffline) break;
      if (Date.now() > hoardDeadline) {
        throw new Error(`games not hoarded: ${JSON.stringify(games)}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    await vatOk(["start", "desk", "--state", s2]);
    const desk2 = new Guest(s2, "desk");
    await desk2.waitFor(/VAT-READY/, 1);
    assert.equal(await desk2.ask("read user note"), `VAT-REPLY read ${marker}`);
    await vatOk(["stop", "desk", "--state", s2]);
    const changed = await api(s2, "POST", "/api/password", {
      old: "first secret",
      new: "second secret",
    });
    assert.deepEqual(changed, { status: 200, body: { changed: true } });
    await vatOk(["logout", "--wait", "--state", s2]);
    await processes.pop()!.stop();

    // The directory goes away: VAT 1 lets alice in with the password last used there.
    await server!.stop();
    server = null;
    const offWrong = await runVat([
      "login",
      "alice",
      "--password-file",
      `${dir}/bad`,
      "--state",
      s1,
    ]);
    assert.equal(offWrong.code, 1);
    assert.match(offWrong.stderr, /wrong name or password \(offline: using the password last used/);
    const slowed = await runVat(["login", "alice", "--password-file", `${dir}/pw`, "--state", s1]);
    assert.equal(slowed.code, 1);
    assert.match(slowed.stderr, /too many failed logins; try again in \d+ s/);
    await new Promise((r) => setTimeout(r, 1100));
    const off = await vatOk(["login", "alice", "--password-file", `${dir}/pw`, "--state", s1]);
    assert.match(off.stdout, /offline: using the password last used on this VAT/);
    assert.equal((await whoami(s1)).user?.offline, true);
    assert.deepEqual(await names(s1), ["desk", "games"]);
    await vatOk(["logout", "--state", s1]);

    // Back online: the password changed on VAT 2 is the one that works on VAT 1 now.
    await serve(port);
    const old = await runVat(["login", "alice", "--password-file", `${dir}/pw`, "--state", s1]);
    assert.equal(old.code, 1);
    assert.match(old.stderr, /wrong name or password/);
    await new Promise((r) => setTimeout(r, 2100));
    await vatOk(["login", "alice", "--password-file", `${dir}/pw2`, "--state", s1]);
    assert.equal((await whoami(s1)).user?.offline, false);

    // Disabled: her session ends at VAT 1's next contact with the directory, and her
    // running appliance is suspended.
    await vatOk(["start", "desk", "--state", s1]);
    await desk1.waitFor(/VAT-READY/, 2);
    await vatOk(["user", "disable", "alice", ...admin]);
    const deadline = Date.now() + 60_000;
    const memoryImage = `${s1}/users/alice/appliances/desk/memory.img`;
    while (
      (await whoami(s1)).user !== null || await qemuProcessesUnder(s1) !== "" ||
      !(await Deno.stat(memoryImage).then(() => true, () => false))
    ) {
      if (Date.now() > deadline) throw new Error("alice was not logged out, desk not suspended");
      await new Promise((r) => setTimeout(r, 300));
    }
    const disabled = await runVat([
      "login",
      "alice",
      "--password-file",
      `${dir}/pw2`,
      "--state",
      s1,
    ]);
    assert.equal(disabled.code, 1);
    assert.match(disabled.stderr, /the account alice is disabled/);

    // Revoked, bob's appliance goes (its user disk is in his data repository); granted
    // again while he is logged in, it comes back at the VAT's next contact.
    await vatOk(["user", "revoke", "bob", "lab", ...admin]);
    await vatOk(["login", "bob", "--password-file", `${dir}/pw`, "--state", s1]);
    assert.deepEqual(await names(s1), []);
    await vatOk(["user", "grant", "bob", `${url}apps/lab`, ...admin]);
    const regrant = Date.now() + 15_000;
    while ((await names(s1)).join() !== "lab") {
      if (Date.now() > regrant) throw new Error("lab did not come back");
      await new Promise((r) => setTimeout(r, 300));
    }
  } finally {
    for (const p of processes) await p.stop();
    await (server as VatProcess | null)?.stop();
    const left = await qemuProcessesUnder(dir);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    assert.equal(left, "", "no QEMU left behind");
  }
});
