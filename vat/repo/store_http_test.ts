import assert from "node:assert/strict";
import { PermanentError, UsageError } from "../errors.ts";
import { HttpStore } from "./store_http.ts";

// These need no server: each call fails before a request is sent. The transport
// against real servers (vat serve, nginx) is tested in tests/store_http_test.ts.

const data = new TextEncoder().encode("x");

async function withStore(
  url: string,
  kind: "static" | "vat-serve",
  fn: (store: HttpStore) => Promise<void>,
): Promise<void> {
  const store = new HttpStore(url, kind);
  try {
    await fn(store);
  } finally {
    await store.close();
  }
}

Deno.test("HttpStore's location is the directory URL without credentials or query", async () => {
  await withStore("https://user:pw@cdn.example/repos/a?token=s3cret", "static", (store) => {
    assert.equal(store.location, "https://cdn.example/repos/a/");
    assert.equal(store.canList, false);
    return Promise.resolve();
  });
  await withStore("http://127.0.0.1:8455/", "vat-serve", (store) => {
    assert.equal(store.location, "http://127.0.0.1:8455/");
    assert.equal(store.canList, true);
    return Promise.resolve();
  });
});

Deno.test("HttpStore refuses URLs that are not http(s)", () => {
  assert.throws(() => new HttpStore("ftp://host/repo/", "static"), UsageError);
  assert.throws(() => new HttpStore("not a url", "static"), UsageError);
});

Deno.test("HttpStore on a static server refuses writes and listing with PermanentError", async () => {
  await withStore("http://127.0.0.1:1/repo/", "static", async (store) => {
    await assert.rejects(store.put("latest", data), /read-only HTTP repository/);
    await assert.rejects(store.create("versions/1/manifest.json", data), PermanentError);
    await assert.rejects(store.delete("latest"), PermanentError);
    await assert.rejects(
      (async () => {
        for await (const _ of store.list("versions/")) break;
      })(),
      /static HTTP server, which cannot list/,
    );
  });
});

Deno.test("HttpStore on vat serve without a key says to pass --key", async () => {
  await withStore("http://127.0.0.1:1/repo/", "vat-serve", async (store) => {
    for (
      const write of [
        store.put("latest", data),
        store.create("latest", data),
        store.delete("latest"),
      ]
    ) {
      await assert.rejects(write, (err: Error) => {
        assert.ok(err instanceof PermanentError);
        assert.match(err.message, /cannot write latest to http:\/\/127\.0\.0\.1:1\/repo\/.*--key/);
        return true;
      });
    }
  });
});

Deno.test("HttpStore checks keys and ranges before sending anything", async () => {
  await withStore("http://127.0.0.1:1/repo/", "vat-serve", async (store) => {
    for (const key of ["../x", "a//b", "/etc/passwd", "a/./b"]) {
      await assert.rejects(store.get(key), UsageError);
      await assert.rejects(store.put(key, data), UsageError);
      await assert.rejects(store.delete(key), UsageError);
    }
    await assert.rejects(store.getRange("x", -1, 4), UsageError);
    await assert.rejects(store.getRange("x", 0, 1.5), UsageError);
    await assert.rejects(
      (async () => {
        for await (const _ of store.list("no-slash")) break;
      })(),
      UsageError,
    );
  });
});
