/**
 * The S3 transport under a hostile S3 server on loopback (written here: it speaks
 * just enough S3 to answer `SlowDown`, `InternalError` and 429 before it serves the
 * object): `openStore("s3://...")` retries with growing, jittered waits and honours
 * `Retry-After`, gives up with a clear `TransientError`, and never retries 403 or 404.
 * A real S3 engine (Ceph RGW) is tested in tests/store_s3_test.ts.
 */

import assert from "node:assert/strict";
import { NotFoundError, PermanentError, TransientError } from "../vat/errors.ts";
import { openStore } from "../vat/repo/open_store.ts";
import type { RetryEvent, RetryPolicy } from "../vat/repo/store_retrying.ts";

const text = (data: Uint8Array) => new TextDecoder().decode(data);

function s3Error(status: number, code: string, message: string, headers: HeadersInit = {}) {
  return new Response(
    `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code>` +
      `<Message>${message}</Message><RequestId>tx1</RequestId></Error>`,
    { status, headers: { "Content-Type": "application/xml", ...headers } },
  );
}

const slowDown = (headers: HeadersInit = {}) =>
  s3Error(503, "SlowDown", "Please reduce your request rate.", headers);

interface Hostile {
  /** Requests seen per object key: method and time. */
  seen: Map<string, { method: string; at: number }[]>;
  /** Objects stored by PUT (and served to GET once the failures run out). */
  objects: Map<string, Uint8Array>;
  open(policy: RetryPolicy): ReturnType<typeof openStore>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * An S3 server for bucket "vat" that answers each key's requests with the failures
 * `script` lists for it, in turn, then as S3 would. Every request must be SigV4-signed.
 */
function hostileS3(script: Record<string, (() => Response)[]>): Hostile {
  const seen = new Map<string, { method: string; at: number }[]>();
  const objects = new Map<string, Uint8Array>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    assert.match(req.headers.get("authorization") ?? "", /^AWS4-HMAC-SHA256 Credential=AKID\//);
    const key = path.replace(/^\/vat\/repo\//, "");
    if (!seen.has(key)) seen.set(key, []);
    seen.get(key)!.push({ method: req.method, at: performance.now() });
    const body = req.method === "PUT" ? new Uint8Array(await req.arrayBuffer()) : null;
    const failure = script[key]?.shift();
    if (failure) return failure();
    if (body) {
      objects.set(key, body);
      return new Response(null, { status: 200 });
    }
    const object = objects.get(key);
    if (!object) return s3Error(404, "NoSuchKey", "The specified key does not exist.");
    return new Response(object.slice(), {
      headers: {
        "Content-Length": String(object.length),
        "Last-Modified": new Date().toUTCString(),
      },
    });
  });
  const endpoint = `http://127.0.0.1:${server.addr.port}`;
  return {
    seen,
    objects,
    open: (policy) =>
      openStore("s3://vat/repo", {
        s3: { endpoint, region: "us-east-1", accessKeyId: "AKID", secretAccessKey: "SECRET" },
        retry: policy,
      }),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** The waits between successive requests for `key`. */
function gaps(hostile: Hostile, key: string): number[] {
  const times = hostile.seen.get(key)!.map((r) => r.at);
  return times.slice(1).map((at, i) => at - times[i]);
}

Deno.test("S3 SlowDown, InternalError and 429 are retried with growing waits, then succeed", async () => {
  await using hostile = hostileS3({
    "chunks/ab/ab01": [slowDown, slowDown, slowDown, slowDown],
    "versions/1/manifest.json": [
      () => s3Error(500, "InternalError", "We encountered an internal error. Please try again."),
      () => new Response("", { status: 429 }),
      () => s3Error(503, "ServiceUnavailable", "Reduce your request rate."),
    ],
  });
  hostile.objects.set("chunks/ab/ab01", new TextEncoder().encode("chunk bytes"));
  const retries: RetryEvent[] = [];
  const store = await hostile.open({ baseDelayMs: 40, onRetry: (r) => retries.push(r) });
  try {
    assert.equal(text(await store.get("chunks/ab/ab01")), "chunk bytes");
    assert.equal(hostile.seen.get("chunks/ab/ab01")!.length, 5, "four SlowDowns, then the object");
    // Backoff 20-40, 40-80, 80-160, 160-320 ms: each at least as long as the one before,
    // and the server saw the requests at least that far apart.
    const delays = retries.map((r) => r.delayMs);
    const waits = gaps(hostile, "chunks/ab/ab01");
    delays.forEach((delay, i) => {
      const cap = 40 * 2 ** i;
      assert.ok(delay >= cap / 2 && delay <= cap, `backoff ${i + 1} is ${delay} ms`);
      if (i > 0) assert.ok(delay >= delays[i - 1], `backoffs grow: ${delays.map(Math.round)}`);
      assert.ok(waits[i] >= delay - 2, `request ${i + 2} came ${waits[i]} ms after the last`);
    });
    assert.ok(retries.every((r) => /SlowDown/.test((r.error as Error).message)));

    retries.length = 0;
    await store.put("versions/1/manifest.json", new TextEncoder().encode("{}"));
    assert.deepEqual(retries.map((r) => /HTTP (\d+)/.exec((r.error as Error).message)![1]), [
      "500",
      "429",
      "503",
    ]);
    assert.deepEqual(
      hostile.seen.get("versions/1/manifest.json")!.map((r) => r.method),
      ["PUT", "PUT", "PUT", "PUT"],
    );
    assert.equal(text(hostile.objects.get("versions/1/manifest.json")!), "{}");
  } finally {
    await store.close();
  }
});

Deno.test("S3 Retry-After is honoured when it asks for longer than the backoff", async () => {
  await using hostile = hostileS3({ latest: [() => slowDown({ "Retry-After": "1" })] });
  hostile.objects.set("latest", new TextEncoder().encode("7\n"));
  const retries: RetryEvent[] = [];
  const store = await hostile.open({ baseDelayMs: 10, onRetry: (r) => retries.push(r) });
  try {
    assert.equal(text(await store.get("latest")), "7\n");
    assert.ok(gaps(hostile, "latest")[0] >= 990, `waited ${gaps(hostile, "latest")[0]} ms`);
    assert.deepEqual(retries.map((r) => [r.delayMs, r.serverAsked]), [[1000, true]]);
  } finally {
    await store.close();
  }
});

Deno.test("S3 that keeps answering SlowDown: a TransientError naming the key and status", async () => {
  await using hostile = hostileS3({ "chunks/cd/cd02": Array(50).fill(slowDown) });
  const store = await hostile.open({ baseDelayMs: 5, maxAttempts: 5 });
  try {
    await assert.rejects(store.get("chunks/cd/cd02"), (err: Error) => {
      assert.ok(err instanceof TransientError, String(err));
      assert.match(err.message, /^get chunks\/cd\/cd02 in s3:\/\/vat\/repo\/ at http:\/\/127/);
      assert.match(err.message, /failed 5 times over \d+\.\d s and gave up after 5 attempts/);
      assert.match(err.message, /HTTP 503, SlowDown: Please reduce your request rate\./);
      return true;
    });
    assert.equal(hostile.seen.get("chunks/cd/cd02")!.length, 5);
  } finally {
    await store.close();
  }
  // And within the time budget, however many attempts are allowed.
  await using slow = hostileS3({ "chunks/cd/cd03": Array(50).fill(slowDown) });
  const bounded = await slow.open({ baseDelayMs: 50, maxAttempts: 50, maxTotalMs: 400 });
  const started = performance.now();
  try {
    await assert.rejects(bounded.get("chunks/cd/cd03"), /gave up after the 0\.4 s retry budget/);
    assert.ok(performance.now() - started < 600);
  } finally {
    await bounded.close();
  }
});

Deno.test("S3 403 AccessDenied and 404 NoSuchKey are not retried", async () => {
  await using hostile = hostileS3({
    "versions/9/manifest.json": [() => s3Error(403, "AccessDenied", "Access Denied")],
  });
  const store = await hostile.open({ baseDelayMs: 5 });
  try {
    await assert.rejects(store.get("versions/9/manifest.json"), PermanentError);
    assert.equal(hostile.seen.get("versions/9/manifest.json")!.length, 1);
    await assert.rejects(store.get("chunks/ee/ee05"), NotFoundError);
    assert.equal(hostile.seen.get("chunks/ee/ee05")!.length, 1);
  } finally {
    await store.close();
  }
});
