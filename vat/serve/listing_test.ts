import assert from "node:assert/strict";
import { listingBody, walkKeys } from "./listing.ts";

async function tree(keys: string[]): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "vat-listing-" });
  for (const key of keys) {
    await Deno.mkdir(`${dir}/${key}`.replace(/\/[^/]*$/, ""), { recursive: true });
    await Deno.writeTextFile(`${dir}/${key}`, "x");
  }
  return dir;
}

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

const KEYS = ["a", "a-b", "b/x", "b/y/z", "b/y/zz", "b0", "c/d/e/f", "latest", "z"];

Deno.test("walkKeys() lists every object depth first, names sorted, skipping non-objects", async () => {
  const dir = await tree([...KEYS, ".tmp-write", "b/.a.tmp-1", "bad name"]);
  try {
    await Deno.mkdir(`${dir}/empty`);
    await Deno.symlink("/etc", `${dir}/link`);
    assert.deepEqual(await collect(walkKeys(dir)), [
      "a",
      "a-b",
      "b/x",
      "b/y/z",
      "b/y/zz",
      "b0",
      "c/d/e/f",
      "latest",
      "z",
    ]);
    assert.deepEqual(await collect(walkKeys(`${dir}/missing`)), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("walkKeys() resumes right after any cursor, even one that is gone", async () => {
  const dir = await tree(KEYS);
  try {
    const all = await collect(walkKeys(dir));
    for (let i = 0; i < all.length; i++) {
      assert.deepEqual(await collect(walkKeys(dir, all[i])), all.slice(i + 1), `after ${all[i]}`);
    }
    assert.deepEqual(await collect(walkKeys(dir, "b/y/gone")), [
      "b/y/z",
      "b/y/zz",
      "b0",
      "c/d/e/f",
      "latest",
      "z",
    ]);
    assert.deepEqual(await collect(walkKeys(dir, "zzz")), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("listingBody() ends a full page with #more and the cursor, the last with #end", async () => {
  const dir = await tree(KEYS);
  try {
    assert.equal(await new Response(listingBody(dir, "", 3)).text(), "a\na-b\nb/x\n#more b/x\n");
    assert.equal(await new Response(listingBody(dir, "latest", 3)).text(), "z\n#end\n");
    assert.equal(await new Response(listingBody(dir, "c/d/e/f", 2)).text(), "latest\nz\n#end\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
