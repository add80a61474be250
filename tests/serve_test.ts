import assert from "node:assert/strict";
import { generateSigningKey, type SigningKey } from "../vat/auth/signing_key.ts";
import { NotFoundError, UsageError } from "../vat/errors.ts";
import { CONTENT_SHA256_HEADER, sha256Hex, signRequest } from "../vat/auth/request_signature.ts";
import { startRepositoryServer } from "../vat/serve/server.ts";
import { pathExists } from "../vat/fs_atomic.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

/** A running server over `dir/root`, with `dir/outside/secret` beside the root. */
interface Served {
  url: string;
  port: number;
  root: string;
  outside: string;
  /** Given to the server (`--allow-key`). */
  admin: SigningKey;
  /** In the publisherKeys of apps/a/repo.json. */
  publisher: SigningKey;
  /** Allowed nowhere. */
  stranger: SigningKey;
  log: string[];
}

async function withServer(fn: (s: Served) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vat-serve-test-" });
  try {
    const root = `${dir}/root`;
    const outside = `${dir}/outside`;
    await Deno.mkdir(`${root}/apps/a`, { recursive: true });
    await Deno.mkdir(`${root}/apps/b`, { recursive: true });
    await Deno.mkdir(outside);
    await Deno.writeTextFile(`${outside}/secret`, "TOP-SECRET");
    const admin = await generateSigningKey(`${dir}/admin.key`);
    const publisher = await generateSigningKey(`${dir}/publisher.key`);
    const stranger = await generateSigningKey(`${dir}/stranger.key`);
    await Deno.writeTextFile(
      `${root}/apps/a/repo.json`,
      JSON.stringify({ format: 1, publisherKeys: [publisher.publicKeyId] }),
    );
    await Deno.writeTextFile(
      `${root}/apps/b/repo.json`,
      JSON.stringify({ format: 1, publisherKeys: [stranger.publicKeyId.replace(/.$/, "A")] }),
    );
    const log: string[] = [];
    // The admin key is passed as a .pub file, as `--allow-key KEY.pub` does.
    const server = await startRepositoryServer({
      root,
      port: 0,
      allowKeys: [`${dir}/admin.key.pub`],
      log: (line) => log.push(line),
    });
    try {
      const port = Number(new URL(server.url).port);
      await fn({ url: server.url, port, root, outside, admin, publisher, stranger, log });
    } finally {
      await server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

interface SignedOptions {
  method?: string;
  body?: Uint8Array;
  /** Sign this body but send `body`. */
  signedBody?: Uint8Array;
  ifNoneMatch?: string;
  timestampMs?: number;
  /** Sign this Host instead of the server's. */
  host?: string;
}

/** The headers of a request signed by `key`. */
function signedHeaders(
  s: Served,
  key: SigningKey,
  target: string,
  options: SignedOptions = {},
): Record<string, string> {
  const method = options.method ?? "PUT";
  const signed = options.signedBody ?? options.body ?? new Uint8Array(0);
  const headers: Record<string, string> = {
    Authorization: signRequest(key, {
      method,
      host: options.host ?? `127.0.0.1:${s.port}`,
      target,
      ifNoneMatch: options.ifNoneMatch,
      body: signed,
    }, options.timestampMs),
    [CONTENT_SHA256_HEADER]: sha256Hex(signed),
  };
  if (options.ifNoneMatch) headers["If-None-Match"] = options.ifNoneMatch;
  return headers;
}

async function signedFetch(
  s: Served,
  key: SigningKey,
  target: string,
  options: SignedOptions = {},
): Promise<{ status: number; error?: string; headers: Headers }> {
  const response = await fetch(new URL(target, s.url), {
    method: options.method ?? "PUT",
    headers: signedHeaders(s, key, target, options),
    body: options.body as BodyInit | undefined,
  });
  const text = await response.text();
  return {
    status: response.status,
    error: text ? JSON.parse(text).error : undefined,
    headers: response.headers,
  };
}

/** Sends a request exactly as written, bypassing the URL normalisation of fetch. */
async function rawRequest(
  port: number,
  method: string,
  target: string,
  headers: Record<string, string> = {},
  body = new Uint8Array(0),
): Promise<{ status: number; text: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const head = [
    `${method} ${target} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    "Connection: close",
    `Content-Length: ${body.length}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ].join("\r\n") + "\r\n\r\n";
  const request = new Uint8Array([...bytes(head), ...body]);
  for (let sent = 0; sent < request.length;) sent += await conn.write(request.subarray(sent));
  const text = await new Response(conn.readable).text();
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]), text };
}

Deno.test("vat serve refuses an unsigned write with 401 and writes nothing", async () => {
  await withServer(async (s) => {
    const response = await fetch(`${s.url}apps/a/latest`, { method: "PUT", body: "1" });
    assert.equal(response.status, 401);
    assert.equal(response.headers.get("www-authenticate"), "Vat-Ed25519");
    assert.match((await response.json()).error, /must be signed with a publisher key.*--key/);
    assert.equal(await pathExists(`${s.root}/apps/a/latest`), false);

    await Deno.writeTextFile(`${s.root}/apps/a/latest`, "7");
    const del = await fetch(`${s.url}apps/a/latest`, { method: "DELETE" });
    assert.equal(del.status, 401);
    await del.body?.cancel();
    assert.equal(await Deno.readTextFile(`${s.root}/apps/a/latest`), "7");
  });
});

Deno.test("vat serve answers 403 to a key that may not write there", async () => {
  await withServer(async (s) => {
    const denied = await signedFetch(s, s.stranger, "/apps/a/latest", { body: bytes("1") });
    assert.equal(denied.status, 403);
    assert.match(denied.error!, /not write apps\/a\/latest.*publisherKeys of apps\/a\/repo\.json/);
    assert.equal(await pathExists(`${s.root}/apps/a/latest`), false);

    // The publisher of apps/a may write there, and nowhere else.
    assert.equal(
      (await signedFetch(s, s.publisher, "/apps/a/latest", { body: bytes("1") })).status,
      204,
    );
    assert.equal(await Deno.readTextFile(`${s.root}/apps/a/latest`), "1");
    assert.equal(
      (await signedFetch(s, s.publisher, "/apps/b/latest", { body: bytes("1") })).status,
      403,
    );
    assert.equal(
      (await signedFetch(s, s.publisher, "/elsewhere", { body: bytes("1") })).status,
      403,
    );
    assert.equal(await pathExists(`${s.root}/apps/b/latest`), false);
    assert.equal(await pathExists(`${s.root}/elsewhere`), false);

    // Creating a repository takes a key given to the server; updating one, its own keys.
    const init = { body: bytes("{}"), ifNoneMatch: "*" };
    const byPublisher = await signedFetch(s, s.publisher, "/apps/a/sub/repo.json", init);
    assert.equal(byPublisher.status, 403);
    assert.match(byPublisher.error!, /belongs to no repository/);
    assert.equal(await pathExists(`${s.root}/apps/a/sub`), false);
    assert.equal((await signedFetch(s, s.admin, "/apps/c/repo.json", init)).status, 201);
    const update = bytes(JSON.stringify({ publisherKeys: [s.publisher.publicKeyId] }));
    assert.equal(
      (await signedFetch(s, s.publisher, "/apps/a/repo.json", { body: update })).status,
      204,
    );
    assert.equal(
      (await signedFetch(s, s.admin, "/apps/a/repo.json", { body: update })).status,
      204,
    );
  });
});

Deno.test("vat serve refuses a body other than the one signed", async () => {
  await withServer(async (s) => {
    await Deno.writeTextFile(`${s.root}/apps/a/latest`, "3");
    const tampered = await signedFetch(s, s.publisher, "/apps/a/latest", {
      body: bytes("666"),
      signedBody: bytes("4"),
    });
    assert.equal(tampered.status, 401);
    assert.match(tampered.error!, /does not match this request/);
    assert.equal(await Deno.readTextFile(`${s.root}/apps/a/latest`), "3");

    // Nor a create signed as a plain put (a dropped If-None-Match would let it replace).
    const headers = signedHeaders(s, s.publisher, "/apps/a/versions/1/manifest.json", {
      body: bytes("m"),
      ifNoneMatch: "*",
    });
    delete headers["If-None-Match"];
    const response = await fetch(`${s.url}apps/a/versions/1/manifest.json`, {
      method: "PUT",
      headers,
      body: "m",
    });
    assert.equal(response.status, 401);
    await response.body?.cancel();
    assert.equal(await pathExists(`${s.root}/apps/a/versions`), false);
  });
});

Deno.test("vat serve refuses a request signed too long ago or ahead, and a replay", async () => {
  await withServer(async (s) => {
    for (const offsetMs of [-6 * 60_000, 6 * 60_000]) {
      const stale = await signedFetch(s, s.publisher, "/apps/a/latest", {
        body: bytes("1"),
        timestampMs: Date.now() + offsetMs,
      });
      assert.equal(stale.status, 401);
      assert.match(stale.error!, /360 s (behind|ahead of) the server's clock.*NTP/);
    }
    assert.equal(await pathExists(`${s.root}/apps/a/latest`), false);

    const headers = signedHeaders(s, s.publisher, "/apps/a/latest", { body: bytes("5") });
    const first = await fetch(`${s.url}apps/a/latest`, { method: "PUT", headers, body: "5" });
    assert.equal(first.status, 204);
    await Deno.writeTextFile(`${s.root}/apps/a/latest`, "6");
    const replay = await fetch(`${s.url}apps/a/latest`, { method: "PUT", headers, body: "5" });
    assert.equal(replay.status, 401);
    assert.match((await replay.json()).error, /replay/);
    assert.equal(await Deno.readTextFile(`${s.root}/apps/a/latest`), "6");
  });
});

Deno.test("vat serve refuses paths that leave the root, reading and writing nothing there", async () => {
  await withServer(async (s) => {
    const before = [...Deno.readDirSync(s.root)].map((e) => e.name).sort();
    const targets = [
      "/../outside/secret",
      "/%2e%2e/outside/secret",
      "/apps/..%2f..%2foutside/secret",
      "/apps/a/../../../outside/secret",
      "/apps/%2E%2E/%2E%2E/outside/secret",
      "/./outside/secret",
    ];
    for (const target of targets) {
      for (const method of ["GET", "HEAD"]) {
        const got = await rawRequest(s.port, method, target);
        assert.equal(got.status, 400, `${method} ${target}`);
        assert.ok(!got.text.includes("TOP-SECRET"), `${method} ${target} leaked the secret`);
      }
      const evil = target.replace(/secret$/, "evil");
      // Signed by a key allowed everywhere under the root, so only the path can refuse it.
      const put = await rawRequest(
        s.port,
        "PUT",
        evil,
        signedHeaders(s, s.admin, evil, { body: bytes("EVIL") }),
        bytes("EVIL"),
      );
      assert.equal(put.status, 400, `PUT ${evil}`);
      const del = await rawRequest(
        s.port,
        "DELETE",
        target,
        signedHeaders(s, s.admin, target, { method: "DELETE" }),
      );
      assert.equal(del.status, 400, `DELETE ${target}`);
    }
    const listing = await rawRequest(s.port, "GET", "/apps/?list&after=../../outside/x");
    assert.equal(listing.status, 400);
    assert.equal(await Deno.readTextFile(`${s.outside}/secret`), "TOP-SECRET");
    assert.deepEqual([...Deno.readDirSync(s.outside)].map((e) => e.name), ["secret"]);
    assert.deepEqual([...Deno.readDirSync(s.root)].map((e) => e.name).sort(), before);
  });
});

Deno.test("vat serve lets exactly one of racing creates win", async () => {
  await withServer(async (s) => {
    const target = "/apps/a/versions/1/manifest.json";
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        signedFetch(s, i % 2 ? s.admin : s.publisher, target, {
          body: bytes(`writer ${i}`),
          ifNoneMatch: "*",
        })),
    );
    const statuses = results.map((r) => r.status);
    assert.equal(statuses.filter((status) => status === 201).length, 1, `${statuses}`);
    assert.equal(statuses.filter((status) => status === 412).length, 5, `${statuses}`);
    const winner = statuses.indexOf(201);
    assert.equal(await Deno.readTextFile(`${s.root}${target}`), `writer ${winner}`);
  });
});

Deno.test("vat serve lists a directory in pages that resume where the last one ended", async () => {
  await withServer(async (s) => {
    const expected: string[] = [];
    for (let i = 0; i < 23; i++) {
      const key = `chunks/${(i % 5).toString(16).padStart(2, "0")}/c${i}`;
      expected.push(key);
      await Deno.mkdir(`${s.root}/apps/a/${key.replace(/\/[^/]*$/, "")}`, { recursive: true });
      await Deno.writeTextFile(`${s.root}/apps/a/${key}`, "x");
    }
    // A write in progress (FileStore's temporary file) is not an object.
    await Deno.writeTextFile(`${s.root}/apps/a/chunks/00/.c0.tmp-1`, "partial");
    const listed: string[] = [];
    let after = "";
    let pages = 0;
    for (;;) {
      const url = `${s.url}apps/a/chunks/?list&limit=4${after ? `&after=${after}` : ""}`;
      const response = await fetch(url);
      assert.equal(response.status, 200);
      const lines = (await response.text()).split("\n");
      assert.equal(lines.pop(), "");
      const end = lines.pop()!;
      assert.ok(lines.length <= 4);
      listed.push(...lines.map((line) => `chunks/${line}`));
      pages++;
      if (end === "#end") break;
      assert.match(end, /^#more /);
      after = end.slice("#more ".length);
    }
    assert.equal(pages, 6);
    assert.deepEqual(listed.slice().sort(), expected.sort());
    const missing = await fetch(`${s.url}apps/nothing/?list`);
    assert.equal(await missing.text(), "#end\n");
  });
});

Deno.test("vat serve serves objects with HEAD and byte ranges like a static server", async () => {
  await withServer(async (s) => {
    await Deno.writeTextFile(`${s.root}/apps/a/ten`, "0123456789");
    const head = await fetch(`${s.url}apps/a/ten`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), "10");
    assert.equal(head.headers.get("accept-ranges"), "bytes");
    assert.equal(head.headers.get("vat-serve"), "2");
    assert.ok(Date.parse(head.headers.get("last-modified")!) > Date.now() - 60_000);

    const range = await fetch(`${s.url}apps/a/ten`, { headers: { Range: "bytes=2-4" } });
    assert.equal(range.status, 206);
    assert.equal(range.headers.get("content-range"), "bytes 2-4/10");
    assert.equal(await range.text(), "234");
    const suffix = await fetch(`${s.url}apps/a/ten`, { headers: { Range: "bytes=-3" } });
    assert.equal(await suffix.text(), "789");
    const beyond = await fetch(`${s.url}apps/a/ten`, { headers: { Range: "bytes=10-" } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers.get("content-range"), "bytes */10");
    await beyond.body?.cancel();

    const missing = await fetch(`${s.url}apps/a/none`);
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get("vat-serve"), "2");
    await missing.body?.cancel();
    const dir = await fetch(`${s.url}apps/a`);
    assert.equal(dir.status, 404);
    await dir.body?.cancel();
  });
});

Deno.test("vat serve logs one line per write request, refused ones too", async () => {
  await withServer(async (s) => {
    await signedFetch(s, s.publisher, "/apps/a/latest", { body: bytes("12") });
    const refused = await fetch(`${s.url}apps/a/latest`, { method: "DELETE" });
    await refused.body?.cancel();
    await (await fetch(`${s.url}apps/a/latest`)).body?.cancel();
    assert.equal(s.log.length, 2, s.log.join("\n"));
    assert.match(s.log[0], /127\.0\.0\.1 PUT \/apps\/a\/latest 204 ed25519:\S+ 2 B \d+ ms$/);
    assert.match(s.log[1], /DELETE \/apps\/a\/latest 401 - 0 B \d+ ms \(writes must be signed/);
  });
});

Deno.test("startRepositoryServer() refuses a missing root and a bad --allow-key", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-serve-test-" });
  try {
    await assert.rejects(startRepositoryServer({ root: `${dir}/none`, port: 0 }), NotFoundError);
    await assert.rejects(
      startRepositoryServer({ root: dir, port: 0, allowKeys: ["ed25519:short"] }),
      UsageError,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
