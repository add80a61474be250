import assert from "node:assert/strict";
import { HTTPException } from "hono/http-exception";
import { parseObjectPath } from "./object_path.ts";

Deno.test("parseObjectPath() takes plain object and directory paths", () => {
  const object = parseObjectPath("http://h:1/apps/a/versions/3/manifest.json");
  assert.equal(object.key, "apps/a/versions/3/manifest.json");
  assert.equal(object.isDirectory, false);
  assert.equal(object.target, "/apps/a/versions/3/manifest.json");
  const dir = parseObjectPath("http://h:1/apps/a/chunks/?list&after=ab/ab01");
  assert.equal(dir.key, "apps/a/chunks");
  assert.equal(dir.isDirectory, true);
  assert.equal(dir.target, "/apps/a/chunks/?list&after=ab/ab01");
  assert.equal(dir.query.get("after"), "ab/ab01");
  assert.deepEqual(parseObjectPath("http://h/?capabilities").key, "");
});

Deno.test("parseObjectPath() refuses dot segments, empty segments and percent-encoding", () => {
  for (
    const target of [
      "/../etc/passwd",
      "/a/../b",
      "/a/./b",
      "//etc/passwd",
      "/a//b",
      "/%2e%2e/x",
      "/a%2fb",
      "/.hidden",
      "/a b",
      "/a\\..\\b",
    ]
  ) {
    assert.throws(
      () => parseObjectPath(`http://h${target}`),
      (err: unknown) => err instanceof HTTPException && err.status === 400,
      target,
    );
  }
});
