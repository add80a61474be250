import assert from "node:assert/strict";
import { generateSigningKey } from "../vat/auth/signing_key.ts";
import { NotFoundError, PermanentError, ProtocolError, TransientError } from "../vat/errors.ts";
import { openStore } from "../vat/repo/open_store.ts";
import { HttpStore, openHttpStore } from "../vat/repo/store_http.ts";
import type { RetryEvent } from "../vat/repo/store_retrying.ts";
import { testStore } from "../vat/repo/store_test_suite.ts";
import { startRepositoryServer } from "../vat/serve/server.ts";
import { startNginx } from "./fixtures/nginx.ts";

testStore("HttpStore (vat serve)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-httpstore-serve-" });
  await Deno.mkdir(`${dir}/root`);
  try {
    const key = await generateSigningKey(`${dir}/publisher.key`);
    const server = await startRepositoryServer({
      root: `${dir}/root`,
      port: 0,
      allowKeys: [key.publicKeyId],
      log: () => {},
    });
    // A repository below the root, as a server of many repositories holds them.
    const store = await openHttpStore(`${server.url}apps/demo`, {
      signingKey: key,
      listPageSize: 1,
    });
    assert.equal(store.serverKind, "vat-serve");
    return {
      store,
      cleanup: async () => {
        await server.close();
        await Deno.remove(dir, { recursive: true });
      },
    };
  } catch (err) {
    await Deno.remove(dir, { recursive: true });
    throw err;
  }
});

testStore("HttpStore (nginx)", async () => {
  const root = await Deno.makeTempDir({ prefix: "vat-httpstore-nginx-" });
  let nginx;
  try {
    nginx = await startNginx(root);
    const store = await openHttpStore(nginx.url);
    assert.equal(store.serverKind, "static");
    const stop = nginx.stop;
    return {
      store,
      seed: async (key, data) => {
        await Deno.mkdir(`${root}/${key}`.replace(/\/[^/]*$/, ""), { recursive: true });
        await Deno.writeFile(`${root}/${key}`, data);
      },
      cleanup: async () => {
        await stop();
        await Deno.remove(root, { recursive: true });
      },
    };
  } catch (err) {
    await nginx?.stop();
    await Deno.remove(root, { recursive: true });
    throw err;
  }
});

const bytes = (text: string) => new TextEncoder().encode(text);

/** Asserts that `promise` rejects with an `ErrorClass` whose message matches `pattern`. */
async function rejectsWith(
  promise: Promise<unknown>,
  ErrorClass: new (...args: never[]) => Error,
  pattern: RegExp,
): Promise<void> {
  await assert.rejects(promise, (err: Error) => {
    assert.ok(err instanceof ErrorClass, `expected ${ErrorClass.name}, got ${err}`);
    assert.match(err.message, pattern);
    return true;
  });
}
const text = (data: Uint8Array) => new TextDecoder().decode(data);

/** Runs `fn` against a static store on nginx serving a fresh directory. */
async function withNginx(
  fn: (store: HttpStore, root: string) => Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "vat-httpstore-nginx-" });
  try {
    const nginx = await startNginx(root);
    try {
      const store = await openHttpStore(nginx.url);
      try {
        await fn(store, root);
      } finally {
        await store.close();
      }
    } finally {
      await nginx.stop();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("HttpStore on nginx: writes and listing fail with PermanentError saying why", async () => {
  await withNginx(async (store, root) => {
    assert.equal(store.canList, false);
    await rejectsWith(store.put("latest", bytes("1")), PermanentError, /read-only HTTP/);
    await rejectsWith(store.create("latest", bytes("1")), PermanentError, /read-only HTTP/);
    await rejectsWith(store.delete("latest"), PermanentError, /read-only HTTP/);
    await rejectsWith(
      (async () => {
        for await (const _ of store.list("chunks/")) break;
      })(),
      PermanentError,
      /static HTTP server, which cannot list/,
    );
    assert.deepEqual([...Deno.readDirSync(root)], []);
  });
});

Deno.test("HttpStore on nginx: a directory is not an object", async () => {
  await withNginx(async (store, root) => {
    await Deno.mkdir(`${root}/versions/1`, { recursive: true });
    assert.equal(await store.stat("versions/1"), null);
    await assert.rejects(store.get("versions/1"), NotFoundError);
    await assert.rejects(store.getRange("versions/1", 0, 4), NotFoundError);
  });
});

Deno.test("HttpStore on nginx: ranges of an empty object and at the end are empty", async () => {
  await withNginx(async (store, root) => {
    await Deno.writeFile(`${root}/empty`, new Uint8Array(0));
    await Deno.writeFile(`${root}/ten`, bytes("0123456789"));
    assert.equal((await store.getRange("empty", 0, 10)).length, 0);
    assert.equal((await store.getRange("ten", 10, 5)).length, 0);
    assert.equal((await store.getRange("ten", 50, 5)).length, 0);
    assert.equal((await store.getRange("ten", 3, 0)).length, 0);
    await assert.rejects(store.getRange("missing", 3, 0), NotFoundError);
    assert.equal(text(await store.getRange("ten", 9, 1)), "9");
  });
});

/** Runs `fn` against a store on a scripted server. */
async function withFakeServer(
  handler: (request: Request) => Response | Promise<Response>,
  fn: (url: string) => Promise<void>,
): Promise<void> {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/repo/`);
  } finally {
    await server.shutdown();
  }
}

Deno.test("HttpStore slices the answer of a server that ignores Range", async () => {
  await withFakeServer(
    () => new Response("0123456789"),
    async (url) => {
      const store = new HttpStore(url, "static");
      try {
        assert.equal(text(await store.getRange("x", 2, 3)), "234");
        assert.equal(text(await store.getRange("x", 8, 5)), "89");
        assert.equal((await store.getRange("x", 12, 5)).length, 0);
      } finally {
        await store.close();
      }
    },
  );
});

Deno.test("HttpStore refuses a 206 that is not the range it asked for", async () => {
  await withFakeServer(
    () =>
      new Response("0123", {
        status: 206,
        headers: { "Content-Range": "bytes 0-3/10" },
      }),
    async (url) => {
      const store = new HttpStore(url, "static");
      try {
        await rejectsWith(store.getRange("x", 2, 4), ProtocolError, /Content-Range/);
      } finally {
        await store.close();
      }
    },
  );
});

Deno.test("HttpStore maps statuses to NotFound, Permanent, Transient and Protocol errors", async () => {
  const statuses: Record<string, number> = {
    gone: 404,
    auth: 401,
    deny: 403,
    busy: 503,
    slow: 429,
    odd: 418,
  };
  await withFakeServer(
    (request) => {
      const name = new URL(request.url).pathname.split("/").pop()!;
      return new Response(JSON.stringify({ error: `because ${name}` }), {
        status: statuses[name] ?? 500,
      });
    },
    async (url) => {
      const store = new HttpStore(url, "static");
      try {
        await assert.rejects(store.get("gone"), NotFoundError);
        assert.equal(await store.stat("gone"), null);
        await assert.rejects(store.get("auth"), (err: Error) => {
          assert.ok(err instanceof PermanentError);
          assert.match(err.message, /\/repo\/auth was refused \(401\): because auth/);
          return true;
        });
        await rejectsWith(store.get("deny"), PermanentError, /403/);
        await rejectsWith(store.get("busy"), TransientError, /503/);
        await rejectsWith(store.get("slow"), TransientError, /429/);
        await rejectsWith(store.get("odd"), ProtocolError, /418/);
      } finally {
        await store.close();
      }
    },
  );
});

Deno.test("openStore() retries 500, 502, 503, 504 and 429 with backoff, honouring Retry-After", async () => {
  const failures: Record<string, Response[]> = {
    busy: [500, 502, 503, 504].map((status) => new Response("busy", { status })),
    limited: [new Response("slow down", { status: 429, headers: { "Retry-After": "1" } })],
    down: Array.from({ length: 20 }, () => new Response("down", { status: 503 })),
  };
  const seen: Record<string, number[]> = {};
  await withFakeServer(
    (request) => {
      const url = new URL(request.url);
      if (url.searchParams.has("capabilities")) return new Response("static");
      const name = url.pathname.split("/").pop()!;
      (seen[name] ??= []).push(performance.now());
      const failure = failures[name]?.shift();
      if (failure) return failure;
      if (name === "gone") return new Response("no", { status: 404 });
      if (name === "deny") return new Response("no", { status: 403 });
      return new Response(`object ${name}`);
    },
    async (url) => {
      const retries: RetryEvent[] = [];
      const store = await openStore(url, {
        retry: { baseDelayMs: 50, onRetry: (retry) => retries.push(retry) },
      });
      try {
        assert.equal(text(await store.get("busy")), "object busy");
        assert.equal(seen.busy.length, 5, "four failures, then the object");
        // Backoff 25-50, 50-100, 100-200, 200-400 ms, never shorter than the one before;
        // the server saw the requests at least that far apart.
        const delays = retries.map((r) => r.delayMs);
        const gaps = seen.busy.slice(1).map((at, i) => at - seen.busy[i]);
        delays.forEach((delay, i) => {
          assert.ok(delay >= 25 * 2 ** i && delay <= 50 * 2 ** i, `backoff ${i + 1}: ${delay}`);
          if (i > 0) assert.ok(delay >= delays[i - 1], `backoffs grow: ${delays}`);
          assert.ok(gaps[i] >= delay - 2, `request ${i + 2} came ${gaps[i]} ms after the last`);
        });

        assert.equal(text(await store.getRange("limited", 0, 6)), "object");
        const waited = seen.limited[1] - seen.limited[0];
        assert.ok(waited >= 990, `Retry-After: 1 was honoured (${waited} ms)`);
        assert.ok(retries.some((r) => r.what === "get limited at 0+6" && r.serverAsked));

        await rejectsWith(store.get("gone"), NotFoundError, /gone does not exist/);
        await rejectsWith(store.get("deny"), PermanentError, /403/);
        assert.equal(seen.gone.length, 1, "404 is not retried");
        assert.equal(seen.deny.length, 1, "403 is not retried");

        await rejectsWith(
          store.stat("down"),
          TransientError,
          /^stat down in http:.* failed 6 times over .* gave up after 6 attempts: HEAD .*down failed \(503\)/,
        );
        assert.equal(seen.down.length, 6);
      } finally {
        await store.close();
      }
    },
  );
});

Deno.test("HttpStore times out a stalled server with TransientError", async () => {
  const stall = Promise.withResolvers<void>();
  await withFakeServer(
    async () => {
      await stall.promise;
      return new Response("late");
    },
    async (url) => {
      const store = new HttpStore(url, "static", { timeoutMs: 200 });
      try {
        await rejectsWith(store.get("x"), TransientError, /timed out/);
      } finally {
        stall.resolve();
        await store.close();
      }
    },
  );
});

Deno.test("HttpStore times out a body that stops flowing", async () => {
  const stall = Promise.withResolvers<void>();
  await withFakeServer(
    () => {
      const body = new ReadableStream({
        async start(controller) {
          controller.enqueue(bytes("01234"));
          await stall.promise;
          controller.close();
        },
      });
      return new Response(body, { headers: { "Content-Length": "10" } });
    },
    async (url) => {
      const store = new HttpStore(url, "static", { timeoutMs: 200 });
      try {
        await rejectsWith(store.get("x"), TransientError, /timed out/);
      } finally {
        stall.resolve();
        await store.close();
      }
    },
  );
});

Deno.test("HttpStore: an unreachable server is a TransientError", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await assert.rejects(openHttpStore(`http://127.0.0.1:${port}/repo/`), TransientError);
});

Deno.test("HttpStore sends the URL's credentials as Basic auth and hides them", async () => {
  let seen: string | null = null;
  await withFakeServer(
    (request) => {
      seen = request.headers.get("authorization");
      return new Response("ok");
    },
    async (url) => {
      const store = await openHttpStore(url.replace("http://", "http://reader:s%3Acret@"));
      try {
        assert.equal(store.location, url);
        assert.equal(text(await store.get("latest")), "ok");
        assert.equal(seen, `Basic ${btoa("reader:s:cret")}`);
      } finally {
        await store.close();
      }
    },
  );
});
