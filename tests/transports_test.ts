/**
 * The same administrator's round trip on every transport, through the real CLI: a
 * repository created and published to over `vat serve` (HTTP, signed writes) and over
 * S3 (Ceph's RADOS Gateway), read back by export from vat serve, from a static nginx
 * serving the same directory, and from S3, byte for byte; racing publishers on S3.
 */

import assert from "node:assert/strict";
import { sameBytes, scribble, writeImage } from "./helpers/images.ts";
import { startVat } from "./helpers/processes.ts";
import { runVat, vatOk } from "./helpers/vat_cli.ts";
import { startCeph } from "./fixtures/ceph.ts";
import { startNginx } from "./fixtures/nginx.ts";

const MiB = 1024 * 1024;
const BUCKET = "vat-transports";
const ceph = await startCeph({ bucket: BUCKET });

function s3Env(): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: ceph.endpoint,
    AWS_ACCESS_KEY_ID: ceph.accessKeyId,
    AWS_SECRET_ACCESS_KEY: ceph.secretAccessKey,
    AWS_REGION: "us-east-1",
  };
}

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vat-transports-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function images(dir: string) {
  await writeImage(`${dir}/disk.raw`, 12 * MiB, [[0, 3 * MiB], [8 * MiB, 2 * MiB]]);
  const qcow = await new Deno.Command("qemu-img", {
    args: ["convert", "-O", "qcow2", `${dir}/disk.raw`, `${dir}/disk.qcow2`],
  }).output();
  assert.ok(qcow.success);
  await vatOk(["keygen", "--out", `${dir}/key`]);
}

Deno.test("publish to vat serve, export from vat serve and from nginx", async () => {
  await withDir(async (dir) => {
    await images(dir);
    await Deno.mkdir(`${dir}/served`);
    const server = await startVat(
      [
        "serve",
        "--root",
        `${dir}/served`,
        "--listen",
        "127.0.0.1:0",
        "--allow-key",
        `${dir}/key.pub`,
      ],
      (out) => /serving .* at http/.test(out),
    );
    const nginx = await startNginx(`${dir}/served`);
    try {
      const url = /at (http\S+)/.exec(server.output())![1];
      const repo = `${url}apps/demo`;
      await vatOk(["repo", "init", repo, "--kind", "appliance", "--key", `${dir}/key`]);
      const unsigned = await runVat(["repo", "init", `${url}apps/other`, "--kind", "appliance"]);
      assert.equal(unsigned.code, 1);
      assert.match(unsigned.stderr, /--key/);
      await vatOk(["publish", repo, "--image", `${dir}/disk.qcow2`, "--key", `${dir}/key`]);
      await scribble(`${dir}/disk.raw`, 5 * MiB, 100_000, 3);
      await vatOk(["publish", repo, "--image", `${dir}/disk.raw`, "--key", `${dir}/key`]);

      await vatOk(["export", `${repo}@2`, `${dir}/from-serve.raw`]);
      assert.ok(await sameBytes(`${dir}/disk.raw`, `${dir}/from-serve.raw`));
      // A static server sees the same repository: no listing, versions found from `latest`.
      const staticRepo = `${nginx.url.replace(/\/?$/, "/")}apps/demo`;
      await vatOk(["export", staticRepo, `${dir}/from-nginx.raw`]);
      assert.ok(await sameBytes(`${dir}/disk.raw`, `${dir}/from-nginx.raw`));
      const ls = JSON.parse((await vatOk(["repo", "ls", staticRepo, "--json"])).stdout);
      assert.deepEqual(ls.versions.map((v: { version: number }) => v.version), [1, 2]);
      await vatOk(["repo", "verify", staticRepo, "--all"]);
      const readOnly = await runVat([
        "publish",
        staticRepo,
        "--image",
        `${dir}/disk.raw`,
        "--key",
        `${dir}/key`,
      ]);
      assert.equal(readOnly.code, 1);
      assert.match(readOnly.stderr, /read-only/);

      const gc = JSON.parse(
        (await vatOk(["repo", "gc", repo, "--keep", "1", "--key", `${dir}/key`, "--json"])).stdout,
      );
      assert.deepEqual(gc.deletedVersions, [1]);
      await vatOk(["repo", "verify", repo, "--all"]);
    } finally {
      await nginx.stop();
      await server.stop();
    }
  });
});

Deno.test("publish to S3 and export from it, racing publishers commit once each", async () => {
  await withDir(async (dir) => {
    await images(dir);
    const env = s3Env();
    const repo = `s3://${BUCKET}/repos/${crypto.randomUUID()}`;
    await vatOk(["repo", "init", repo, "--kind", "appliance", "--chunk-size", "128K"], { env });
    await vatOk(["publish", repo, "--image", `${dir}/disk.qcow2`, "--key", `${dir}/key`], { env });
    await vatOk(["export", repo, `${dir}/out.raw`], { env });
    assert.ok(await sameBytes(`${dir}/disk.raw`, `${dir}/out.raw`));

    await writeImage(`${dir}/a.raw`, 4 * MiB, [[0, 4 * MiB]], 41);
    await writeImage(`${dir}/b.raw`, 4 * MiB, [[0, 4 * MiB]], 42);
    const [a, b] = await Promise.all(
      ["a", "b"].map((n) =>
        vatOk(["publish", repo, "--image", `${dir}/${n}.raw`, "--key", `${dir}/key`, "--json"], {
          env,
        })
      ),
    );
    const versions = [JSON.parse(a.stdout).version, JSON.parse(b.stdout).version].sort();
    assert.deepEqual(versions, [2, 3]);
    await vatOk(["export", `${repo}@${JSON.parse(b.stdout).version}`, `${dir}/b.out`], { env });
    assert.ok(await sameBytes(`${dir}/b.raw`, `${dir}/b.out`));
    const gc = JSON.parse(
      (await vatOk(["repo", "gc", repo, "--keep", "1", "--json"], { env })).stdout,
    );
    assert.equal(gc.deletedVersions.length, 2);
    await vatOk(["repo", "verify", repo, "--all"], { env });

    const noCreds = await runVat(["repo", "ls", repo], {
      env: { ...env, AWS_SECRET_ACCESS_KEY: "wrong" },
    });
    assert.equal(noCreds.code, 1);
    assert.match(noCreds.stderr, /refused|credentials/i);
  });
});

Deno.test("transports: the Ceph cluster stops", async () => {
  await ceph.stop();
});
