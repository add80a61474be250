/**
 * `vat serve`: runs the repository server (`repositoryApp`) on an address, loopback
 * unless told otherwise.
 *
 * @module
 */

import { NotFoundError, UsageError } from "../errors.ts";
import { readPublicKeyId } from "../auth/signing_key.ts";
import { repositoryApp } from "./repository_app.ts";

/** Where `vat serve` listens unless told otherwise. */
export const DEFAULT_HOSTNAME = "127.0.0.1";
export const DEFAULT_PORT = 8455;
/** The server's own state under its root (never served: keys do not start with "."). */
export const STATE_DIR_NAME = ".vat-serve";

/** Options of `startRepositoryServer`. */
export interface RepositoryServerOptions {
  /** The directory of repositories to serve. */
  root: string;
  /** Default `DEFAULT_HOSTNAME` (loopback). */
  hostname?: string;
  /** Default `DEFAULT_PORT`; 0 picks a free port. */
  port?: number;
  /**
   * Keys that may write anywhere (and create repositories): public key ids
   * (`ed25519:...`) or paths of `.pub` files, as `--allow-key` takes them.
   */
  allowKeys?: string[];
  /** Where the one line per write request goes (default: stdout). */
  log?: (line: string) => void;
  /** The largest object a PUT may carry (default 1 GiB). */
  maxObjectBytes?: number;
  /** How long a write's body may stall before it is dropped (default 30 s). */
  bodyTimeoutMs?: number;
  /** Requests handled at once; more are refused with 503 (default 64). */
  maxConcurrentRequests?: number;
  /**
   * Where the server keeps its own state (the replay guard's SQLite file); default
   * `ROOT/.vat-serve`, which is never served (no key starts with ".").
   */
  stateDir?: string;
  /** The names (`host:port`) writes must be signed for (`--host`); default: any. */
  hosts?: string[];
}

/** A running repository server. */
export interface RepositoryServer {
  /** Its base URL, ending in "/" (`http://127.0.0.1:8455/`). */
  readonly url: string;
  /** Stops listening and waits for the requests in flight. */
  close(): Promise<void>;
}

/** Starts serving `root`; resolves once it listens. */
export async function startRepositoryServer(
  options: RepositoryServerOptions,
): Promise<RepositoryServer> {
  let root: string;
  try {
    root = await Deno.realPath(options.root);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new NotFoundError(`${options.root} does not exist; create the directory to serve`, {
        cause: err,
      });
    }
    throw err;
  }
  if (!(await Deno.stat(root)).isDirectory) {
    throw new UsageError(`${options.root} is not a directory`);
  }
  const allowKeys: string[] = [];
  for (const key of options.allowKeys ?? []) {
    try {
      allowKeys.push(await readPublicKeyId(key));
    } catch (err) {
      throw new UsageError(
        `--allow-key ${key} is neither a public key id (ed25519:...) nor a readable .pub file`,
        { cause: err },
      );
    }
  }
  const stateDir = options.stateDir ?? `${root}/${STATE_DIR_NAME}`;
  await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const { app, close: closeApp } = repositoryApp({
    root,
    allowKeys,
    log: options.log,
    maxObjectBytes: options.maxObjectBytes,
    bodyTimeoutMs: options.bodyTimeoutMs,
    maxConcurrentRequests: options.maxConcurrentRequests,
    replayFile: `${stateDir}/replay.sqlite`,
    hosts: options.hosts,
  });
  const hostname = options.hostname ?? DEFAULT_HOSTNAME;
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      { hostname, port: options.port ?? DEFAULT_PORT, onListen: () => {} },
      (request, info) => app.fetch(request, { remoteAddr: info.remoteAddr }),
    );
  } catch (err) {
    closeApp();
    if (err instanceof Deno.errors.AddrInUse) {
      throw new UsageError(
        `${hostname}:${options.port} is already in use; choose another with --listen ADDR:PORT`,
        { cause: err },
      );
    }
    throw err;
  }
  const host = server.addr.hostname.includes(":")
    ? `[${server.addr.hostname}]`
    : server.addr.hostname;
  return {
    url: `http://${host}:${server.addr.port}/`,
    close: async () => {
      await server.shutdown();
      closeApp();
    },
  };
}

/**
 * Parses `--listen`: `ADDR:PORT`, `[IPV6]:PORT`, `ADDR` (default port) or `:PORT`
 * (default address).
 */
export function parseListenAddress(text: string): { hostname: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]*))(?::(\d{1,5}))?$/.exec(text.trim());
  const port = m?.[3] === undefined ? DEFAULT_PORT : Number(m[3]);
  if (!m || port > 65535) {
    throw new UsageError(`--listen ${text}: expected ADDR:PORT, e.g. 127.0.0.1:${DEFAULT_PORT}`);
  }
  return { hostname: m[1] ?? (m[2] || DEFAULT_HOSTNAME), port };
}
