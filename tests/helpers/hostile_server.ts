/**
 * A hostile repository server for the security tests: a static HTTP server on
 * 127.0.0.1 that serves a real repository directory (GET, single ranges, HEAD), except
 * for the objects the test replaces with an attacker's bytes or hides (404) — what a
 * compromised server, mirror or man in the middle of an http:// repository can do.
 *
 * @module
 */

/** A running hostile server. */
export interface HostileServer {
  readonly port: number;
  /** The repository's URL. */
  readonly url: string;
  /** Serves `bytes` for `key` instead of the real object; `null` hides it (404). */
  replace(key: string, bytes: Uint8Array | string | null): void;
  /** Serves the directory's objects as they are again. */
  restore(key?: string): void;
  close(): Promise<void>;
}

/** Serves the repository directory `root` on a free loopback port. */
export function startHostileServer(root: string): HostileServer {
  const replaced = new Map<string, Uint8Array<ArrayBuffer> | null>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const key = decodeURIComponent(new URL(req.url).pathname.slice(1));
    if ((req.method !== "GET" && req.method !== "HEAD") || key.split("/").includes("..")) {
      return new Response("no", { status: 405 });
    }
    let body: Uint8Array<ArrayBuffer>;
    let modified = new Date();
    if (replaced.has(key)) {
      const bytes = replaced.get(key)!;
      if (bytes === null) return new Response("not found", { status: 404 });
      body = bytes;
    } else {
      try {
        const info = await Deno.stat(`${root}/${key}`);
        if (!info.isFile) return new Response("not found", { status: 404 });
        body = await Deno.readFile(`${root}/${key}`);
        modified = info.mtime ?? modified;
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) return new Response("not found", { status: 404 });
        throw err;
      }
    }
    const headers = {
      "content-length": String(body.length),
      "last-modified": modified.toUTCString(),
    };
    if (req.method === "HEAD") return new Response(null, { headers });
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.get("range") ?? "");
    if (range) {
      const start = Number(range[1]);
      const end = Math.min(Number(range[2]), body.length - 1);
      if (start >= body.length) {
        return new Response(null, {
          status: 416,
          headers: { "content-range": `bytes */${body.length}` },
        });
      }
      return new Response(body.slice(start, end + 1), {
        status: 206,
        headers: { "content-range": `bytes ${start}-${end}/${body.length}` },
      });
    }
    return new Response(body, { headers });
  });
  const port = server.addr.port;
  return {
    port,
    url: `http://127.0.0.1:${port}/`,
    replace(key, bytes) {
      replaced.set(
        key,
        typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes && bytes.slice(),
      );
    },
    restore(key) {
      if (key === undefined) replaced.clear();
      else replaced.delete(key);
    },
    close: () => server.shutdown(),
  };
}
