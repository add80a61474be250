/**
 * The directory of users through the real CLI (`vat directory init`, `vat user ...`)
 * on a plain directory and on `vat serve`, and the login protocol of vat serve:
 * slots only after a proof of the password, failed attempts slowed, a server offering
 * a downgraded KDF refused.
 */
import assert from "node:assert/strict";
import { generateSigningKey } from "../vat/auth/signing_key.ts";
import { Directory } from "../vat/directory/directory.ts";
import { loginOnline, LoginRefusedError } from "../vat/directory/login_client.ts";
import { openStore } from "../vat/repo/open_store.ts";
import { startRepositoryServer } from "../vat/serve/server.ts";
import { runVat, vatOk } from "./helpers/vat_cli.ts";

async function withTemp(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vat-users-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function login(location: string, name: string, password: string, kind?: "recovery") {
  const store = await openStore(location);
  try {
    return await loginOnline(await Directory.open(store), name, password, kind);
  } finally {
    await store.close();
  }
}

Deno.test("vat directory init and vat user add/grant/revoke/disable/enable/ls/show/passwd on a plain directory", async () => {
  await withTemp(async (t) => {
    await vatOk(["keygen", "--out", `${t}/admin.key`]);
    await vatOk(["keygen", "--out", `${t}/stranger.key`]);
    await Deno.writeTextFile(`${t}/pw`, "correct horse\n");
    await Deno.writeTextFile(`${t}/pw2`, "battery staple\n");
    const dir = `${t}/dir`;
    await vatOk(["directory", "init", dir, "--key", `${t}/admin.key`]);
    const admin = ["--directory", dir, "--key", `${t}/admin.key`];
    const added = await vatOk([
      "user",
      "add",
      "alice",
      ...admin,
      "--password-file",
      `${t}/pw`,
      "--display-name",
      "Alice Liddell",
      "--data-repo",
      `${t}/data/alice`,
      "--json",
    ]);
    const alice = JSON.parse(added.stdout);
    assert.equal(alice.displayName, "Alice Liddell");
    assert.match(alice.recoveryKey, /^([A-Z2-9]{4}-){7}[A-Z2-9]{4}$/);
    assert.equal(alice.dataRepoMade, true);
    assert.equal(JSON.parse(await Deno.readTextFile(`${t}/data/alice/repo.json`)).kind, "data");
    const entryBefore = await Deno.readTextFile(`${dir}/users/alice/entry.json`);

    // Bad inputs change nothing.
    const again = await runVat(["user", "add", "alice", ...admin, "--password-file", `${t}/pw`]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /user alice already exists/);
    assert.equal(await Deno.readTextFile(`${dir}/users/alice/entry.json`), entryBefore);
    const stranger = await runVat([
      "user",
      "add",
      "bob",
      "--directory",
      dir,
      "--key",
      `${t}/stranger.key`,
      "--password-file",
      `${t}/pw`,
    ]);
    assert.equal(stranger.code, 1);
    assert.match(stranger.stderr, /is not an administrator of the directory/);
    const badName = await runVat(["user", "add", "Bob!", ...admin, "--password-file", `${t}/pw`]);
    assert.equal(badName.code, 2);
    assert.match(badName.stderr, /is not a user name/);
    const noPassword = await runVat(["user", "add", "bob", ...admin], {});
    assert.equal(noPassword.code, 2);
    assert.match(noPassword.stderr, /give --password-file FILE/);

    await vatOk(["user", "add", "bob", ...admin, "--password-file", `${t}/pw2`]);
    await vatOk(["user", "grant", "alice", "/srv/apps/office", ...admin]);
    await vatOk(["user", "grant", "alice", "/srv/apps/games", "--as", "fun", ...admin]);
    await vatOk(["user", "revoke", "alice", "fun", ...admin]);
    await vatOk(["user", "disable", "bob", ...admin]);
    const ls = JSON.parse((await vatOk(["user", "ls", "--directory", dir, "--json"])).stdout);
    assert.deepEqual(ls.map((u: { name: string }) => u.name), ["alice", "bob"]);
    assert.deepEqual(ls[0].entitlements, [
      { name: "office", repo: "/srv/apps/office", publisherKeys: [] },
    ]);
    assert.equal(ls[0].serial, 4);
    assert.equal(ls[1].enabled, false);
    await vatOk(["user", "enable", "bob", ...admin]);
    const show = await vatOk(["user", "show", "bob", "--directory", dir]);
    assert.match(show.stdout, /bob \(bob\), enabled/);
    const revokeMissing = await runVat(["user", "revoke", "bob", "office", ...admin]);
    assert.equal(revokeMissing.code, 1);
    assert.match(revokeMissing.stderr, /bob is not entitled to office/);

    // The user changes their own password: the old one stops working, the recovery key
    // still works, and the slots are signed by the user's key, not an administrator's.
    const first = await login(dir, "alice", "correct horse");
    await vatOk([
      "user",
      "passwd",
      "alice",
      "--directory",
      dir,
      "--password-file",
      `${t}/pw`,
      "--new-password-file",
      `${t}/pw2`,
    ]);
    await assert.rejects(() => login(dir, "alice", "correct horse"), LoginRefusedError);
    const second = await login(dir, "alice", "battery staple");
    assert.deepEqual(second.secret, first.secret);
    assert.equal(second.slots.serial, 2);
    const slotsFile = JSON.parse(await Deno.readTextFile(`${dir}/users/alice/slots.json`));
    assert.equal(slotsFile.signatures[0].key, alice.userKey);
    const recovery = await login(dir, "alice", alice.recoveryKey, "recovery");
    assert.deepEqual(recovery.secret, first.secret);
    await Deno.writeTextFile(`${t}/rk`, alice.recoveryKey.toLowerCase() + "\n");
    await vatOk([
      "user",
      "passwd",
      "alice",
      "--directory",
      dir,
      "--recovery-file",
      `${t}/rk`,
      "--new-password-file",
      `${t}/pw`,
    ]);
    assert.deepEqual((await login(dir, "alice", "correct horse")).secret, first.secret);
    const wrong = await runVat([
      "user",
      "passwd",
      "alice",
      "--directory",
      dir,
      "--password-file",
      `${t}/pw2`,
      "--new-password-file",
      `${t}/pw2`,
    ]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /wrong name or password/);
  });
});

Deno.test("vat serve hands key slots out only after a proof of the password, slowing failures", async () => {
  await withTemp(async (t) => {
    await Deno.mkdir(`${t}/root`);
    const admin = await generateSigningKey(`${t}/admin.key`);
    const server = await startRepositoryServer({
      root: `${t}/root`,
      port: 0,
      allowKeys: [admin.publicKeyId],
      log: () => {},
    });
    try {
      const dir = `${server.url}dir/`;
      await Deno.writeTextFile(`${t}/pw`, "correct horse\n");
      await Deno.writeTextFile(`${t}/pw2`, "battery staple\n");
      await vatOk(["directory", "init", dir, "--key", `${t}/admin.key`]);
      const added = JSON.parse(
        (await vatOk([
          "user",
          "add",
          "alice",
          "--directory",
          dir,
          "--key",
          `${t}/admin.key`,
          "--password-file",
          `${t}/pw`,
          "--data-repo",
          `${server.url}data/alice/`,
          "--json",
        ])).stdout,
      );
      assert.equal(added.dataRepoMade, true);
      const ls = JSON.parse((await vatOk(["user", "ls", "--directory", dir, "--json"])).stdout);
      assert.deepEqual(ls.map((u: { name: string }) => u.name), ["alice"]);
      // The entry is public, the slots are not.
      assert.equal(
        await fetch(`${dir}users/alice/entry.json`).then(async (r) => {
          await r.body?.cancel();
          return r.status;
        }),
        200,
      );
      const hidden = await fetch(`${dir}users/alice/slots.json`);
      assert.equal(hidden.status, 403);
      assert.match((await hidden.json()).error, /only after a login/);

      const ok = await login(dir, "alice", "correct horse");
      assert.equal(ok.via, "server");
      assert.equal(ok.entry.name, "alice");

      // A wrong password is refused with the one message, then the next try waits.
      await assert.rejects(
        () => login(dir, "alice", "wrong"),
        (err) => err instanceof LoginRefusedError && err.message === "wrong name or password",
      );
      await assert.rejects(
        () => login(dir, "alice", "correct horse"),
        (err) =>
          err instanceof LoginRefusedError && err.retryAfterMs > 0 &&
          /too many failed logins/.test(err.message),
      );
      await new Promise((r) => setTimeout(r, 1100));
      assert.deepEqual((await login(dir, "alice", "correct horse")).secret, ok.secret);

      // An unknown user gets parameters like a real one's, the same on every ask.
      const start = () =>
        fetch(`${dir}?login-start`, { method: "POST", body: JSON.stringify({ name: "mallory" }) })
          .then((r) => r.json());
      const [a, b] = [await start(), await start()];
      assert.deepEqual(a.slots, b.slots);
      // Shaped like a real user's (alice's), salts aside.
      const real = await fetch(`${dir}?login-start`, {
        method: "POST",
        body: JSON.stringify({ name: "alice" }),
      }).then((r) => r.json());
      const shape = (slots: { kind: string; kdf: { salt: string } }[]) =>
        slots.map((s) => ({ ...s, kdf: { ...s.kdf, salt: s.kdf.salt.length } }));
      assert.deepEqual(shape(a.slots), shape(real.slots));
      await new Promise((r) => setTimeout(r, 1100));
      await assert.rejects(() => login(dir, "mallory", "x"), /wrong name or password/);

      // Passwords change over vat serve too: the write is signed by the user's key.
      await new Promise((r) => setTimeout(r, 2100));
      await vatOk([
        "user",
        "passwd",
        "alice",
        "--directory",
        dir,
        "--password-file",
        `${t}/pw`,
        "--new-password-file",
        `${t}/pw2`,
      ]);
      assert.deepEqual((await login(dir, "alice", "battery staple")).secret, ok.secret);
      // Nobody else's key may write alice's slots.
      const bob = await generateSigningKey(`${t}/bob.key`);
      const store = await openStore(dir, { signingKey: bob });
      try {
        await assert.rejects(
          () => store.put("users/alice/slots.json", new TextEncoder().encode("{}")),
          /may not write/,
        );
      } finally {
        await store.close();
      }
    } finally {
      await server.close();
    }
  });
});

Deno.test("a server offering KDF parameters below the floor or above the cap gets no proof", async () => {
  await withTemp(async (t) => {
    const admin = await generateSigningKey(`${t}/admin.key`);
    await Deno.mkdir(`${t}/dir`);
    await Directory.init(await openStore(`${t}/dir`), admin);
    const repoJson = await Deno.readFile(`${t}/dir/repo.json`);
    let logN = 10;
    const proofs: string[] = [];
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      const url = new URL(req.url);
      const headers = { "Vat-Serve": "1" };
      if (url.search === "?capabilities") {
        return Response.json({ server: "vat serve", protocol: 1, write: true, list: true }, {
          headers,
        });
      }
      if (url.pathname.endsWith("/repo.json")) return new Response(repoJson, { headers });
      if (url.search === "?login-start") {
        await req.body?.cancel();
        return Response.json({
          challenge: "c".repeat(32),
          slots: [{
            kind: "password",
            kdf: { alg: "scrypt", logN, r: 8, p: 1, salt: "A".repeat(22) },
          }],
        }, { headers });
      }
      if (url.search === "?login") proofs.push(await req.text());
      else await req.body?.cancel();
      return Response.json({ error: "no" }, { status: 401, headers });
    });
    try {
      const url = `http://127.0.0.1:${server.addr.port}/`;
      await assert.rejects(() => login(url, "alice", "pw"), /below the floor.*downgrade/);
      logN = 40;
      const t0 = performance.now();
      await assert.rejects(() => login(url, "alice", "pw"), /above the cap/);
      assert.ok(performance.now() - t0 < 3000);
      assert.deepEqual(proofs, []);
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test("vat --directory refuses --data-repo, --demo and a config.json directory that is not a location", async () => {
  await withTemp(async (t) => {
    const both = await runVat([
      "--headless",
      "--state",
      `${t}/s`,
      "--directory",
      `${t}/dir`,
      "--data-repo",
      `${t}/data`,
      "--user-key",
      `${t}/k`,
    ]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--directory goes without --data-repo and --user-key/);
    const demo = await runVat([
      "--headless",
      "--state",
      `${t}/s`,
      "--directory",
      `${t}/dir`,
      "--demo",
    ]);
    assert.equal(demo.code, 2);
    assert.match(demo.stderr, /with --directory, grant it to users instead/);
    await Deno.mkdir(`${t}/s2`);
    await Deno.writeTextFile(`${t}/s2/config.json`, JSON.stringify({ directory: 7 }));
    const bad = await runVat(["--headless", "--state", `${t}/s2`]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /"directory" must be a directory's location/);
  });
});
