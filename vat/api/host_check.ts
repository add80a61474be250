/**
 * The daemon's defence against DNS rebinding: a page of another site whose name is made
 * to resolve to 127.0.0.1 reaches the loopback listener with its own name in `Host`.
 * Each listener answers only the names it is known by (`127.0.0.1:PORT`, `localhost:PORT`
 * and `[::1]:PORT` on loopback; the certificate's names on the `--listen` one) and
 * refuses any other `Host` with 421 before the app sees the request.
 *
 * @module
 */

/** The `Host` values a loopback listener on `port` answers. */
export function loopbackHosts(port: number): string[] {
  return [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];
}

/** `host:port` for a name or address (IPv6 in brackets), lower case. */
export function hostWithPort(name: string, port: number): string {
  const host = name.includes(":") && !name.startsWith("[") ? `[${name}]` : name;
  return `${host}:${port}`.toLowerCase();
}

/**
 * Wraps `handler` so that it only answers requests whose `Host` is one of `hosts()`
 * (asked at each request: a listener's port is known once it listens).
 */
export function checkHost<A extends Deno.Addr>(
  handler: Deno.ServeHandler<A>,
  hosts: () => readonly string[],
): Deno.ServeHandler<A> {
  return function checkHostHandler(request, info) {
    // HTTP/2 (over TLS) names the host in :authority, which only the URL shows.
    const host = (request.headers.get("host") ?? new URL(request.url).host).toLowerCase();
    if (!hosts().includes(host)) {
      // The body, if any, is not read.
      return Response.json({
        error: `this vat daemon does not answer to the host "${host}" (it answers to ` +
          `${hosts().join(", ")}); open it by one of those`,
      }, { status: 421 });
    }
    return handler(request, info);
  };
}
