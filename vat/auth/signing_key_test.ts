import assert from "node:assert/strict";
import { UsageError } from "../errors.ts";
import { generateSigningKey, loadSigningKey } from "./signing_key.ts";
import { generateUserKey } from "./user_key.ts";

Deno.test("generateSigningKey() never overwrites a key, even racing itself", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-keygen-" });
  try {
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, () => generateSigningKey(`${dir}/key`)),
    );
    const won = results.filter((r) => r.status === "fulfilled");
    assert.equal(won.length, 1, "exactly one keygen made the key");
    for (const r of results) {
      if (r.status === "rejected") {
        assert.ok(r.reason instanceof UsageError && /already exists/.test(r.reason.message));
      }
    }
    const winner = (won[0] as PromiseFulfilledResult<{ publicKeyId: string }>).value;
    assert.equal((await loadSigningKey(`${dir}/key`)).publicKeyId, winner.publicKeyId);
    assert.equal((await Deno.readTextFile(`${dir}/key.pub`)).trim(), winner.publicKeyId);
    assert.equal((await Deno.stat(`${dir}/key`)).mode! & 0o777, 0o600);

    const before = await Deno.readTextFile(`${dir}/key`);
    await assert.rejects(generateSigningKey(`${dir}/key`), /already exists/);
    assert.equal(await Deno.readTextFile(`${dir}/key`), before);
    // A stray .pub is not overwritten either, and no key is left without its .pub.
    await Deno.writeTextFile(`${dir}/other.pub`, "not mine\n");
    await assert.rejects(generateSigningKey(`${dir}/other`), /other\.pub already exists/);
    assert.equal(await Deno.readTextFile(`${dir}/other.pub`), "not mine\n");
    await assert.rejects(Deno.stat(`${dir}/other`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("generateUserKey() never overwrites a key, even racing itself", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-keygen-" });
  try {
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, () => generateUserKey(`${dir}/user.key`)),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    const before = await Deno.readTextFile(`${dir}/user.key`);
    await assert.rejects(generateUserKey(`${dir}/user.key`), /already exists/);
    assert.equal(await Deno.readTextFile(`${dir}/user.key`), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
