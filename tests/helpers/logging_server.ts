/**
 * A static HTTP server over a repository directory that logs every request, for the
 * tests that check which objects a VAT fetches and in what order. It answers GET and
 * HEAD of files (no ranges: vat's HTTP store reads whole objects), 404 otherwise.
 *
 * @module
 */

/** One request as the server saw it. */
export interface LoggedRequest {
  method: string;
  /** The object's key (the path below the root). */
  key: string;
  atMs: number;
}

/** A running server. */
export interface LoggingServer {
  readonly port: number;
  readonly log: LoggedRequest[];
  close(): Promise<void>;
}

/** Serves `root` on 127.0.0.1 (a free port). */
export function startLoggingServer(root: string): LoggingServer {
  const log: LoggedRequest[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const key = decodeURIComponent(new URL(req.url).pathname.slice(1));
    log.push({ method: req.method, key, atMs: performance.now() });
    if ((req.method !== "GET" && req.method !== "HEAD") || key.includes("..")) {
      return new Response("no", { status: 405 });
    }
    try {
      const info = await Deno.stat(`${root}/${key}`);
      if (!info.isFile) return new Response("not found", { status: 404 });
      const headers = {
        "content-length": String(info.size),
        "last-modified": (info.mtime ?? new Date()).toUTCString(),
      };
      if (req.method === "HEAD") return new Response(null, { headers });
      return new Response(await Deno.readFile(`${root}/${key}`), { headers });
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return new Response("not found", { status: 404 });
      throw err;
    }
  });
  return {
    port: server.addr.port,
    log,
    close: () => server.shutdown(),
  };
}
