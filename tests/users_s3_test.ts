/**
 * A directory of users on S3 (Ceph's RADOS Gateway), through the real CLI: made,
 * users added and changed, passwords changed by the user, logins by test decryption;
 * and what docs/USERS.md says of storage directories: their key slots are as readable
 * as the bucket is (no login protocol guards them, unlike on vat serve).
 */

import assert from "node:assert/strict";
import { Directory } from "../vat/directory/directory.ts";
import { loginOnline, LoginRefusedError } from "../vat/directory/login_client.ts";
import { openStore } from "../vat/repo/open_store.ts";
import { startCeph } from "./fixtures/ceph.ts";
import { runVat, vatOk } from "./helpers/vat_cli.ts";

const BUCKET = "vat-users";
const ceph = await startCeph({ bucket: BUCKET });
const env = {
  AWS_ENDPOINT_URL: ceph.endpoint,
  AWS_ACCESS_KEY_ID: ceph.accessKeyId,
  AWS_SECRET_ACCESS_KEY: ceph.secretAccessKey,
  AWS_REGION: "us-east-1",
};

const s3 = {
  endpoint: env.AWS_ENDPOINT_URL,
  accessKeyId: env.AWS_ACCESS_KEY_ID,
  secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
  region: env.AWS_REGION,
};

async function login(location: string, password: string) {
  const store = await openStore(location, { s3 });
  try {
    return await loginOnline(await Directory.open(store), "alice", password);
  } finally {
    await store.close();
  }
}

Deno.test("a directory of users on S3: init, add, grant, ls, passwd, login", async () => {
  const t = await Deno.makeTempDir({ prefix: "vat-users-s3-" });
  try {
    const location = `s3://${BUCKET}/org`;
    const opts = { env: { ...Deno.env.toObject(), ...env } };
    await vatOk(["keygen", "--out", `${t}/admin`], opts);
    await Deno.writeTextFile(`${t}/pw`, "correct horse\n");
    await Deno.writeTextFile(`${t}/pw2`, "battery staple\n");
    await vatOk(["directory", "init", location, "--key", `${t}/admin`], opts);
    const admin = ["--directory", location, "--key", `${t}/admin`];
    await vatOk([
      "user",
      "add",
      "alice",
      ...admin,
      "--password-file",
      `${t}/pw`,
      "--data-repo",
      `s3://${BUCKET}/data/alice`,
    ], opts);
    await vatOk(["user", "grant", "alice", "https://apps.example/desk/", ...admin], opts);
    const again = await runVat(
      ["user", "add", "alice", ...admin, "--password-file", `${t}/pw`],
      opts,
    );
    assert.equal(again.code, 1);
    assert.match(again.stderr, /user alice already exists/);
    const ls = JSON.parse(
      (await vatOk(["user", "ls", "--directory", location, "--json"], opts)).stdout,
    );
    assert.deepEqual(ls.map((u: { name: string }) => u.name), ["alice"]);
    assert.equal(ls[0].entitlements[0].name, "desk");

    const first = await login(location, "correct horse");
    assert.equal(first.via, "storage");
    await vatOk([
      "user",
      "passwd",
      "alice",
      "--directory",
      location,
      "--password-file",
      `${t}/pw`,
      "--new-password-file",
      `${t}/pw2`,
    ], opts);
    await assert.rejects(() => login(location, "correct horse"), LoginRefusedError);
    assert.deepEqual((await login(location, "battery staple")).secret, first.secret);

    // Whoever can read the bucket reads the slots: the storage is the only guard here.
    const store = await openStore(location, { s3 });
    try {
      const slots = JSON.parse(new TextDecoder().decode(await store.get("users/alice/slots.json")));
      assert.equal(typeof slots.payload, "string");
    } finally {
      await store.close();
    }
  } finally {
    await Deno.remove(t, { recursive: true });
  }
});

Deno.test("users on S3: the Ceph cluster stops", async () => {
  await ceph.stop();
});
