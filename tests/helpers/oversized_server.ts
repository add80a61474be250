/**
 * An oversized-answer server for the tests of limits on untrusted input: it serves
 * a real repository directory but answers the objects a rule picks with 500 MiB of
 * junk, with or without a Content-Length, generated as it is sent (never held).
 *
 * @module
 */

const MiB = 1024 * 1024;
/** What a hostile answer weighs. */
export const HUGE_BYTES = 500 * MiB;

/** How a hostile server answers one object. */
export type Answer = "honest" | "huge" | "huge-unannounced";

/** Serves `root` over HTTP, answering the keys `rule` picks with 500 MiB of junk. */
export function startOversizedServer(root: string, rule: (path: string) => Answer) {
  const sent = { bytes: 0 };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    const answer = rule(path);
    // Junk in place of objects that exist; what does not exist is not found.
    const exists = await Deno.stat(`${root}${path}`).then((i) => i.isFile, () => false);
    if (answer !== "honest" && exists) {
      const piece = new Uint8Array(MiB).fill(0x7b);
      let left = HUGE_BYTES;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (left <= 0) return controller.close();
          controller.enqueue(piece.subarray(0, Math.min(left, piece.length)));
          sent.bytes += Math.min(left, piece.length);
          left -= piece.length;
        },
      });
      const headers = new Headers({ "content-type": "application/octet-stream" });
      if (answer === "huge") headers.set("content-length", String(HUGE_BYTES));
      return new Response(req.method === "HEAD" ? null : body, { headers });
    }
    try {
      const data = await Deno.readFile(`${root}${path}`);
      return new Response(req.method === "HEAD" ? null : data, {
        headers: { "content-length": String(data.length) },
      });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  const { port } = server.addr as Deno.NetAddr;
  return { url: `http://127.0.0.1:${port}/repo`, sent, close: () => server.shutdown() };
}
