import assert from "node:assert/strict";
import { UsageError } from "../errors.ts";
import { s3Options } from "./args.ts";

Deno.test("s3Options() reads the secret from a file, and warns of one on the command line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-args-" });
  try {
    await Deno.writeTextFile(`${dir}/secret`, "FILE-SECRET\n");
    const warnings: string[] = [];
    const warn = (line: string) => warnings.push(line);
    assert.equal(
      s3Options({ "s3-secret-access-key-file": `${dir}/secret` }, warn).secretAccessKey,
      "FILE-SECRET",
    );
    assert.deepEqual(warnings, []);
    assert.equal(s3Options({ "s3-secret-access-key": "ARGV" }, warn).secretAccessKey, "ARGV");
    assert.match(warnings[0], /every user of this machine.*--s3-secret-access-key-file/);
    assert.equal(s3Options({}, warn).secretAccessKey, undefined, "the environment fills it in");
    assert.throws(
      () => s3Options({ "s3-secret-access-key-file": `${dir}/missing` }, warn),
      UsageError,
    );
    await Deno.writeTextFile(`${dir}/empty`, "\n");
    assert.throws(
      () => s3Options({ "s3-secret-access-key-file": `${dir}/empty` }, warn),
      /no secret/,
    );
    assert.throws(
      () =>
        s3Options(
          { "s3-secret-access-key-file": `${dir}/secret`, "s3-secret-access-key": "x" },
          warn,
        ),
      /once/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
