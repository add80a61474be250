/**
 * The release repository's freshness (docs/SECURITY.md, "Freeze"), as the updater
 * judges it: a repository whose publisher stopped vouching for its newest release
 * (an expired statement, a frozen copy) and one that withholds a release its
 * publisher vouched for are reported by `vat update check`, with the date.
 */

import assert from "node:assert/strict";
import { vatOk } from "./helpers/vat_cli.ts";

/** A shell script that passes for a vat binary of `version` (only `--version` works). */
async function fakeBinary(path: string, version: string): Promise<string> {
  await Deno.writeTextFile(
    path,
    `#!/bin/sh\nif [ "$1" = --version ]; then echo "vat ${version}"; exit 0; fi\nexit 3\n`,
    { mode: 0o755 },
  );
  return path;
}

Deno.test("vat update check reports a frozen or withholding release repository", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-update-freshness-" });
  try {
    const repo = `${dir}/releases`;
    const key = `${dir}/key`;
    await vatOk(["keygen", "--out", key]);
    await vatOk(["repo", "init", repo, "--kind", "release"]);
    const publish = async (version: string) =>
      await vatOk([
        "release",
        "publish",
        repo,
        "--key",
        key,
        "--binary",
        await fakeBinary(`${dir}/vat-${version}`, version),
        "--quiet",
      ]);
    const check = async () =>
      JSON.parse(
        (await vatOk([
          "update",
          "check",
          "--state",
          `${dir}/state`,
          "--release-repo",
          repo,
          "--release-key",
          `${key}.pub`,
          "--json",
        ])).stdout,
      );
    await publish("9.0.0");
    assert.equal((await check()).freshness, null, "a fresh statement: nothing to say");

    // The publisher vouches for release 1 for one second only, and then nothing new.
    await vatOk(["repo", "refresh", repo, "--key", key, "--expires", "1s"]);
    await new Promise((r) => setTimeout(r, 1500));
    assert.match((await check()).freshness, /has not vouched for its newest version since/);

    // Release 2 is published (and vouched for); a mirror then serves release 1 as the
    // newest with the old statement: the VAT remembers what was vouched for.
    await publish("9.1.0");
    assert.equal((await check()).freshness, null);
    const latest = `${repo}/latest`;
    await Deno.writeTextFile(latest, "1\n");
    await Deno.rename(`${repo}/versions/2`, `${dir}/hidden-2`);
    const withheld = await check();
    assert.equal(withheld.release, 1);
    assert.match(
      withheld.freshness,
      /vouched on .* that version 2 is the newest, but .* offers only version 1: the repository withholds newer versions/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
