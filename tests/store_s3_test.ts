/**
 * `S3Store` against a real S3 engine (Ceph's RADOS Gateway on a throwaway one-node
 * cluster, started once for this file) and, for answers Ceph never gives, against a
 * small fake S3 server.
 */

import assert from "node:assert/strict";
import { AwsClient } from "aws4fetch";
import {
  NotFoundError,
  PermanentError,
  ProtocolError,
  TransientError,
  UsageError,
} from "../vat/errors.ts";
import {
  ensureBucket,
  parseS3Url,
  probeConditionalCreate,
  S3Store,
  type S3StoreOptions,
} from "../vat/repo/store_s3.ts";
import { testStore } from "../vat/repo/store_test_suite.ts";
import { startCeph } from "./fixtures/ceph.ts";

const BUCKET = "vat-test";
// Started once for the file; stopped by the last test below and, if that does not run
// (a filter, a crash), by the fixture's unload handler and the daemons' guards.
const ceph = await startCeph({ bucket: BUCKET });

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

function options(overrides: Partial<S3StoreOptions> = {}): S3StoreOptions {
  return {
    bucket: BUCKET,
    prefix: `t-${crypto.randomUUID()}`,
    endpoint: ceph.endpoint,
    region: "us-east-1",
    accessKeyId: ceph.accessKeyId,
    secretAccessKey: ceph.secretAccessKey,
    ...overrides,
  };
}

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/** Runs `fn` on `items` with at most `limit` calls in flight. */
async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

const test = (name: string, fn: () => Promise<void> | void) =>
  Deno.test({ name, fn, sanitizeOps: false, sanitizeResources: false });

testStore("S3Store", () => {
  const prefix = `t-${crypto.randomUUID()}`;
  const store = new S3Store(options({ prefix }));
  return Promise.resolve({
    store,
    async cleanup() {
      // The suite has closed `store`; empty its prefix with a second one.
      const cleaner = new S3Store(options({ prefix }));
      for await (const key of cleaner.list("")) await cleaner.delete(key);
      await cleaner.close();
    },
  });
});

test("parseS3Url() reads the bucket, prefix, options and environment", () => {
  const env: Record<string, string> = {
    AWS_ACCESS_KEY_ID: "AKID",
    AWS_SECRET_ACCESS_KEY: "SECRET",
    AWS_SESSION_TOKEN: "TOKEN",
    AWS_ENDPOINT_URL: "http://127.0.0.1:7480",
  };
  const parsed = parseS3Url("s3://my-bucket/repos/one", {}, (name) => env[name]);
  assert.deepEqual(parsed, {
    bucket: "my-bucket",
    prefix: "repos/one",
    endpoint: "http://127.0.0.1:7480",
    region: "us-east-1",
    accessKeyId: "AKID",
    secretAccessKey: "SECRET",
    sessionToken: "TOKEN",
  });
  const aws = parseS3Url(
    "s3://my-bucket",
    { region: "eu-west-3" },
    (name) => name === "AWS_ENDPOINT_URL" ? undefined : env[name],
  );
  assert.equal(aws.endpoint, "https://s3.eu-west-3.amazonaws.com");
  assert.equal(aws.prefix, "");
  const store = new S3Store(parsed);
  assert.equal(store.location, "s3://my-bucket/repos/one/ at http://127.0.0.1:7480");
  assert.ok(!store.location.includes("SECRET") && !store.location.includes("AKID"));
});

test("parseS3Url() explains missing credentials and bad locations", () => {
  assert.throws(
    () => parseS3Url("s3://b1b/p", {}, () => undefined),
    (err: Error) =>
      err instanceof UsageError && err.message.includes("s3://b1b/p") &&
      err.message.includes("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
  );
  const keys = { accessKeyId: "a", secretAccessKey: "s" };
  assert.throws(() => parseS3Url("https://b1b/p", keys, () => undefined), /s3:\/\/BUCKET/);
  assert.throws(() => parseS3Url("s3://b1b/../x", keys, () => undefined), UsageError);
  assert.throws(
    () => parseS3Url("s3://b1b/p", { ...keys, endpoint: "ftp://x" }, () => undefined),
    /must be http/,
  );
  assert.throws(
    () => parseS3Url("s3://b1b/p", { ...keys, endpoint: "http://u:pw@x" }, () => undefined),
    /without credentials/,
  );
});

test("S3Store refuses a wrong secret key with PermanentError naming the bucket", async () => {
  const good = new S3Store(options({ prefix: "wrong-secret" }));
  await good.put("repo.json", bytes("{}"));
  const bad = new S3Store(options({ prefix: "wrong-secret", secretAccessKey: "not-the-secret" }));
  const refused = (err: Error) =>
    err instanceof PermanentError && err.message.includes("refused the credentials") &&
    err.message.includes(`"${BUCKET}"`) && err.message.includes("AWS_SECRET_ACCESS_KEY");
  try {
    await assert.rejects(bad.get("repo.json"), refused);
    await assert.rejects(bad.stat("repo.json"), refused); // HEAD: no error body
    await assert.rejects(bad.put("repo.json", bytes("evil")), refused);
    await assert.rejects(bad.create("latest", bytes("1")), refused);
    await assert.rejects(collect(bad.list("")), refused);
    await assert.rejects(bad.delete("repo.json"), refused);
    assert.equal(text(await good.get("repo.json")), "{}", "nothing changed");
    assert.equal(await good.stat("latest"), null);
  } finally {
    await good.delete("repo.json");
    await good.close();
    await bad.close();
  }
});

test("S3Store reports an unreachable endpoint as TransientError", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close(); // nothing listens there now
  const store = new S3Store(options({ endpoint: `http://127.0.0.1:${port}` }));
  try {
    // One at a time: a rejection nobody awaits yet would be an uncaught error.
    const attempts = [
      () => store.get("repo.json"),
      () => store.put("x", bytes("1")),
      () => store.stat("x"),
    ];
    for (const attempt of attempts) {
      await assert.rejects(
        attempt(),
        (err: Error) => err instanceof TransientError && err.message.includes(`127.0.0.1:${port}`),
      );
    }
  } finally {
    await store.close();
  }
});

test("S3Store list() pages through more than 1000 keys", async () => {
  const prefix = `t-${crypto.randomUUID()}`;
  const store = new S3Store(options({ prefix }));
  const keys = Array.from({ length: 1005 }, (_, i) => `chunks/${String(i % 7)}/k${i}`);
  try {
    await inParallel(keys, 32, (key) => store.put(key, bytes("x")));
    await store.put("versions/1/manifest.json", bytes("m"));
    // The server's own page limit (1000) gives two pages...
    const listed = await collect(store.list("chunks/"));
    assert.equal(listed.length, keys.length, "no key lost or repeated");
    assert.deepEqual(listed.sort(), [...keys].sort());
    // ...and a small page size many.
    const paged = new S3Store(options({ prefix, listPageSize: 97 }));
    assert.deepEqual(
      (await collect(paged.list(""))).sort(),
      [...keys, "versions/1/manifest.json"].sort(),
    );
    await paged.close();
  } finally {
    await inParallel([...keys, "versions/1/manifest.json"], 32, (key) => store.delete(key));
    await store.close();
  }
});

test("S3Store list() decodes keys that XML must escape", async () => {
  const prefix = `t-${crypto.randomUUID()}`;
  const store = new S3Store(options({ prefix }));
  // Such keys cannot come from vat (checkKey refuses them), but a bucket may hold them.
  const odd = [`odd/a&b<c>d'e"f`, "odd/ünï cödé", "odd/tab\there", "odd/amp;&amp;"];
  const aws = new AwsClient({
    accessKeyId: ceph.accessKeyId,
    secretAccessKey: ceph.secretAccessKey,
    service: "s3",
    region: "us-east-1",
    retries: 0,
  });
  const url = (key: string) =>
    `${ceph.endpoint}/${BUCKET}/${prefix}/${key.split("/").map(encodeURIComponent).join("/")}`;
  try {
    for (const key of odd) {
      const res = await aws.fetch(url(key), { method: "PUT", body: "x" });
      assert.equal(res.status, 200, await res.text());
    }
    assert.deepEqual((await collect(store.list("odd/"))).sort(), [...odd].sort());
  } finally {
    for (const key of odd) await (await aws.fetch(url(key), { method: "DELETE" })).body?.cancel();
    await store.close();
  }
});

test("S3Store getRange() past the end and of empty objects returns nothing", async () => {
  const store = new S3Store(options());
  try {
    await store.put("versions/1/disk.idx", bytes("0123456789"));
    await store.put("empty", new Uint8Array(0));
    assert.equal(text(await store.getRange("versions/1/disk.idx", 10, 5)), "");
    assert.equal(text(await store.getRange("versions/1/disk.idx", 50, 5)), "");
    assert.equal(text(await store.getRange("versions/1/disk.idx", 4, 0)), "");
    assert.equal(text(await store.getRange("versions/1/disk.idx", 9, 1)), "9");
    assert.equal((await store.getRange("empty", 0, 10)).length, 0);
    await assert.rejects(store.getRange("missing", 0, 0), NotFoundError);
    await assert.rejects(store.getRange("missing", 5, 10), NotFoundError);
  } finally {
    await store.delete("versions/1/disk.idx");
    await store.delete("empty");
    await store.close();
  }
});

test("S3Store on a missing bucket says so; ensureBucket() creates it once", async () => {
  const bucket = `vat-new-${crypto.randomUUID().slice(0, 8)}`;
  const store = new S3Store(options({ bucket, prefix: "" }));
  try {
    await assert.rejects(
      store.get("repo.json"),
      (err: Error) => err instanceof NotFoundError && err.message.includes(`bucket "${bucket}"`),
    );
    await assert.rejects(store.delete("repo.json"), NotFoundError);
    assert.equal(await ensureBucket(options({ bucket })), true);
    assert.equal(await ensureBucket(options({ bucket })), false);
    await store.put("repo.json", bytes("{}"));
    assert.equal(text(await store.get("repo.json")), "{}");
    await store.delete("repo.json");
  } finally {
    await store.close();
  }
});

test("probeConditionalCreate() passes on Ceph RGW, which honours If-None-Match: *", async () => {
  const store = new S3Store(options());
  try {
    await probeConditionalCreate(store);
    assert.deepEqual(await collect(store.list("")), [], "the probe cleaned up");
  } finally {
    await store.close();
  }
});

/**
 * A fake S3 endpoint answering every request with `answer`; records the requests.
 * For answers Ceph does not give: 5xx, ignored ranges, odd XML, 409 conflicts.
 */
function fakeS3(answer: (req: Request, n: number) => Response | Promise<Response>) {
  // What was asked; a Request itself is unreadable once answered.
  const seen: { method: string; headers: Headers }[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req) => answer(req, seen.push({ method: req.method, headers: new Headers(req.headers) }) - 1),
  );
  const store = new S3Store(options({
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    prefix: "p",
  }));
  return {
    store,
    seen,
    async [Symbol.asyncDispose]() {
      await store.close();
      await server.shutdown();
    },
  };
}

const xml = (body: string, status = 200) =>
  new Response(`<?xml version="1.0" encoding="UTF-8"?>${body}`, {
    status,
    headers: { "Content-Type": "application/xml" },
  });

test("S3Store maps 5xx and 429 to TransientError and other answers to ProtocolError", async () => {
  await using fake = fakeS3((req) => {
    if (req.url.endsWith("/busy")) return xml("<Error><Code>SlowDown</Code></Error>", 503);
    if (req.url.endsWith("/many")) return new Response("", { status: 429 });
    return xml("<Error><Code>InvalidArgument</Code><Message>a &amp; b</Message></Error>", 400);
  });
  await assert.rejects(
    fake.store.get("busy"),
    (err: Error) => err instanceof TransientError && err.message.includes("SlowDown"),
  );
  await assert.rejects(fake.store.put("many", bytes("1")), TransientError);
  await assert.rejects(
    fake.store.get("odd"),
    (err: Error) =>
      err instanceof ProtocolError && err.message.includes("InvalidArgument: a & b") &&
      err.message.includes("read odd"),
  );
});

test("S3Store getRange() copes with a server that ignores Range", async () => {
  await using fake = fakeS3(() => new Response("0123456789"));
  assert.equal(text(await fake.store.getRange("k", 3, 4)), "3456");
  assert.equal(text(await fake.store.getRange("k", 8, 4)), "89");
  assert.equal(fake.seen[0].headers.get("Range"), "bytes=3-6");
});

test("S3Store getRange() refuses a 206 for another range", async () => {
  await using fake = fakeS3(() =>
    new Response("0123", { status: 206, headers: { "Content-Range": "bytes 0-3/10" } })
  );
  await assert.rejects(fake.store.getRange("k", 3, 4), ProtocolError);
});

test("S3Store create() sends If-None-Match: * and settles 409 conflicts", async () => {
  // First a conflict with a write in flight that then fails (nothing there: retry),
  // then a conflict with a write that won (someone else's bytes: false).
  let stored: string | null = null;
  await using fake = fakeS3(async (req, n) => {
    if (req.method === "GET") {
      return stored === null
        ? xml("<Error><Code>NoSuchKey</Code></Error>", 404)
        : new Response(stored);
    }
    assert.equal(req.headers.get("If-None-Match"), "*");
    await req.arrayBuffer();
    if (n === 0) return xml("<Error><Code>ConditionalRequestConflict</Code></Error>", 409);
    stored = "theirs";
    return xml("<Error><Code>ConditionalRequestConflict</Code></Error>", 409);
  });
  assert.equal(await fake.store.create("latest", bytes("ours")), false);
  assert.deepEqual(fake.seen.map((req) => req.method), ["PUT", "GET", "PUT", "GET"]);
});

test("S3Store create() treats its own bytes after a 412 as its own earlier create", async () => {
  await using fake = fakeS3((req) =>
    req.method === "GET"
      ? new Response("ours")
      : xml("<Error><Code>PreconditionFailed</Code></Error>", 412)
  );
  assert.equal(await fake.store.create("latest", bytes("ours")), true);
});

test("S3Store list() parses entities, character references, CDATA and pages", async () => {
  await using fake = fakeS3((req) => {
    const url = new URL(req.url);
    assert.equal(url.searchParams.get("list-type"), "2");
    assert.equal(url.searchParams.get("prefix"), "p/odd/");
    if (url.searchParams.get("continuation-token") === null) {
      return xml(
        `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
          `<IsTruncated>true</IsTruncated>` +
          `<Contents><Key>p/odd/a&amp;b&lt;c&gt;&quot;&apos;</Key><Size>1</Size></Contents>` +
          `<Contents><Key>p/odd/&#233;&#x1F600;</Key></Contents>` +
          `<NextContinuationToken>t+/=&amp;1</NextContinuationToken></ListBucketResult>`,
      );
    }
    assert.equal(url.searchParams.get("continuation-token"), "t+/=&1");
    return xml(
      `<ListBucketResult><IsTruncated>false</IsTruncated>` +
        `<Contents><Key><![CDATA[p/odd/<raw>&]]></Key></Contents></ListBucketResult>`,
    );
  });
  assert.deepEqual(await collect(fake.store.list("odd/")), [
    `odd/a&b<c>"'`,
    "odd/é😀",
    "odd/<raw>&",
  ]);
});

test("S3Store list() refuses malformed listings", async () => {
  const listings = [
    `<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>`, // no token
    `<ListBucketResult><Contents><Key>p/x&bogus;</Key></Contents></ListBucketResult>`,
    `<ListBucketResult><Contents><Key>elsewhere/x</Key></Contents></ListBucketResult>`,
    `<Error><Code>Odd</Code></Error>`,
  ];
  for (const listing of listings) {
    await using fake = fakeS3(() => xml(listing));
    await assert.rejects(collect(fake.store.list("")), ProtocolError, listing);
  }
});

test("stop the Ceph cluster", async () => {
  await ceph.stop();
  const left = await new Deno.Command("pgrep", { args: ["-f", ceph.dir] }).output();
  assert.equal(new TextDecoder().decode(left.stdout), "", "no daemon of this cluster is left");
  await assert.rejects(Deno.stat(ceph.dir), Deno.errors.NotFound);
});
