/**
 * The remote display (`vat --listen ADDR:PORT`): the daemon's app, UI and API, served
 * over TLS on an address other machines can reach, beside the loopback HTTP listener
 * that the CLI keeps using. The certificate is self-signed (`tls_certificate.ts`); its
 * fingerprint is printed at start and shown by `vat status`, for the user to compare
 * in the remote browser. Sign-in is the same (the token URL traded for a cookie), and
 * every cookie set over TLS is `Secure`.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { ensureTlsCertificate } from "./tls_certificate.ts";
import { checkHost, hostWithPort } from "../api/host_check.ts";

/** Where the remote display listens. */
export interface ListenAddress {
  /** An IPv4 or IPv6 address (without brackets) or a host name. */
  hostname: string;
  /** 0 picks a free port. */
  port: number;
}

/** A running remote display. */
export interface RemoteDisplay {
  /** Its URL, with the machine's host name when it listens on every address. */
  url: string;
  /** The certificate's SHA-256 fingerprint (`AB:CD:...`). */
  fingerprint: string;
  /** Whether the certificate was made at this start. */
  certificateCreated: boolean;
  server: Deno.HttpServer<Deno.NetAddr>;
}

const _LABEL = "[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?";
const _HOSTNAME = new RegExp(`^${_LABEL}(\\.${_LABEL})*$`);

/** Parses `--listen`: `HOST:PORT`, `IPV4:PORT` or `[IPV6]:PORT`. */
export function parseListenAddress(text: string): ListenAddress {
  const bad = () =>
    new UsageError(
      `--listen "${text}" is not ADDR:PORT (for example 0.0.0.0:8443, [::]:8443 or vat.lan:8443)`,
    );
  const match = /^\[([0-9A-Fa-f:.]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (!match) throw bad();
  const [, hostname, portText] = match;
  const port = Number(portText);
  if (!(port < 65536)) throw new UsageError(`--listen "${text}": ${portText} is not a port`);
  if (!text.startsWith("[") && !_HOSTNAME.test(hostname)) throw bad();
  if (text.startsWith("[") && !hostname.includes(":")) throw bad();
  return { hostname, port };
}

/** Whether `hostname` means every address of the machine. */
export function isUnspecifiedAddress(hostname: string): boolean {
  return hostname === "0.0.0.0" || /^[0:]+$/.test(hostname);
}

/**
 * Makes or loads the certificate (in `stateDir/remote-display/`) and serves `handler`
 * over TLS on `listen`, with every cookie made `Secure`. Throws `UsageError` when the
 * address is in use or not this machine's.
 */
export async function serveRemoteDisplay(options: {
  stateDir: string;
  listen: ListenAddress;
  handler: Deno.ServeHandler<Deno.NetAddr>;
}): Promise<RemoteDisplay> {
  const { listen } = options;
  const everywhere = isUnspecifiedAddress(listen.hostname);
  const names = everywhere
    ? [Deno.hostname(), ...Deno.networkInterfaces().map((i) => i.address)]
    : [listen.hostname];
  const certificate = await ensureTlsCertificate(`${options.stateDir}/remote-display`, names);
  let server: Deno.HttpServer<Deno.NetAddr>;
  // Its own names only (against DNS rebinding); the port is known once it listens.
  let hosts: string[] = [];
  try {
    server = Deno.serve({
      hostname: listen.hostname,
      port: listen.port,
      cert: certificate.certPem,
      key: certificate.keyPem,
      onListen: () => {},
    }, checkHost(secureCookies(options.handler), () => hosts));
    hosts = names.map((name) => hostWithPort(name, server.addr.port));
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) {
      throw new UsageError(`--listen ${listen.hostname}:${listen.port}: the port is in use`, {
        cause: err,
      });
    }
    if (err instanceof Deno.errors.AddrNotAvailable) {
      throw new UsageError(
        `--listen ${listen.hostname}:${listen.port}: not an address of this machine`,
        { cause: err },
      );
    }
    throw err;
  }
  const host = everywhere ? Deno.hostname() : listen.hostname;
  return {
    url: `https://${host.includes(":") ? `[${host}]` : host}:${server.addr.port}/`,
    fingerprint: certificate.fingerprint,
    certificateCreated: certificate.created,
    server,
  };
}

/**
 * Wraps `handler` so that every cookie it sets is `Secure` (sent back over TLS only).
 * Only responses that set cookies are rebuilt, never a WebSocket upgrade's.
 */
export function secureCookies(
  handler: Deno.ServeHandler<Deno.NetAddr>,
): Deno.ServeHandler<Deno.NetAddr> {
  return async function secureCookiesHandler(request, info) {
    const response = await handler(request, info);
    const cookies = response.headers.getSetCookie();
    if (cookies.length === 0) return response;
    const headers = new Headers(response.headers);
    headers.delete("set-cookie");
    for (const cookie of cookies) {
      headers.append(
        "set-cookie",
        /;\s*secure\s*(;|$)/i.test(cookie) ? cookie : `${cookie}; Secure`,
      );
    }
    return new Response(response.body, {
      status: response.status,
      statusText: response.statusText,
      headers,
    });
  };
}
