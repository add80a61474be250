/**
 * `serveNbd()`: an NBD server for any `BlockDevice`, on a Unix socket (how QEMU reaches
 * vat's disks) and optionally TCP. Speaks the fixed newstyle handshake and simple
 * replies; see `handshake.ts` and `transmission.ts`, and `nbd_errors.ts` for which
 * error each failure gets.
 *
 * @module
 */

import { BufferedReader } from "./buffered_reader.ts";
import { BufferPool } from "./buffer_pool.ts";
import { negotiate } from "./handshake.ts";
import type { NbdExports } from "./nbd_export.ts";
import { ReplyWriter } from "./reply_writer.ts";
import { transmit } from "./transmission.ts";
import { SIMPLE_REPLY_BYTES } from "./nbd_protocol.ts";
import { UsageError } from "../errors.ts";

export type { NbdExport, NbdExports } from "./nbd_export.ts";

/** How long to wait before accepting again after accept() failed. */
const _ACCEPT_RETRY_MS = 100;

/** Request buffers kept for reuse, across all connections of a server. */
const _MAX_POOLED_BYTES = 64 * 1024 * 1024;

/** Where and what `serveNbd()` serves. */
export interface NbdServerOptions {
  /** The exports by name; "" is the default export. Read at every handshake. */
  exports: NbdExports;
  /**
   * Listen on this Unix socket path (mode 0600); it must not exist yet. Removed by
   * `close()`.
   */
  socketPath?: string;
  /** Also (or instead) listen on TCP; hostname defaults to 127.0.0.1, port 0 picks one. */
  tcp?: { hostname?: string; port: number };
  /**
   * Where failures are reported: device errors (the client gets an NBD error) and
   * clients dropped for breaking the protocol. Defaults to `console.error`.
   */
  log?: (message: string, err?: unknown) => void;
}

/** A running NBD server. */
export interface NbdServer {
  /** The Unix socket it listens on, if any. */
  readonly socketPath?: string;
  /** The TCP address it listens on, if any (with the port actually bound). */
  readonly tcpAddr?: Deno.NetAddr;
  /** How many requests its clients have sent so far (a guest's sign of life). */
  readonly requests: number;
  /**
   * Stops listening, answers the requests in flight, refuses later ones with
   * ESHUTDOWN, then drops every connection and removes the socket file. Resolves once
   * no request is running on any device, so the caller may close the devices.
   */
  close(): Promise<void>;
}

/**
 * Starts an NBD server. Throws `UsageError` if given neither a socket path nor TCP,
 * and Deno's errors if it cannot listen (e.g. `AddrInUse` for an existing socket).
 */
export function serveNbd(options: NbdServerOptions): NbdServer {
  if (options.socketPath === undefined && options.tcp === undefined) {
    throw new UsageError("serveNbd() needs a socketPath, tcp, or both");
  }
  const userLog = options.log ?? ((message, err) => console.error(message, err ?? ""));
  const log = (message: string, err?: unknown) => {
    try {
      userLog(message, err);
    } catch {
      // A failing logger must not take the server down with it.
    }
  };
  const shutdown = new AbortController();
  const listeners: Deno.Listener[] = [];
  const connections = new Set<Promise<void>>();
  const counts = { requests: 0 };
  const pool = new BufferPool({
    headroom: SIMPLE_REPLY_BYTES,
    maxPooledBytes: _MAX_POOLED_BYTES,
  });

  let tcpAddr: Deno.NetAddr | undefined;
  try {
    if (options.socketPath !== undefined) {
      listeners.push(Deno.listen({ transport: "unix", path: options.socketPath }));
      // Whoever can connect can read and write the disks. The socket's directory
      // should be private anyway; this closes the socket itself to other users.
      Deno.chmodSync(options.socketPath, 0o600);
    }
    if (options.tcp !== undefined) {
      const listener = Deno.listen({
        transport: "tcp",
        hostname: options.tcp.hostname ?? "127.0.0.1",
        port: options.tcp.port,
      });
      tcpAddr = listener.addr as Deno.NetAddr;
      listeners.push(listener);
    }
  } catch (err) {
    for (const listener of listeners) listener.close();
    if (listeners.length > 0 && options.socketPath !== undefined) {
      _removeSocket(options.socketPath);
    }
    throw err;
  }

  const accepting = listeners.map(async (listener) => {
    while (!shutdown.signal.aborted) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (err) {
        // Closing the listener ends accept() with BadResource. Anything else (out of
        // file descriptors, say) may pass: report it and try again shortly.
        if (shutdown.signal.aborted || err instanceof Deno.errors.BadResource) break;
        log("NBD server could not accept a connection; retrying", err);
        await new Promise((resolve) => setTimeout(resolve, _ACCEPT_RETRY_MS));
        continue;
      }
      // Replies are written whole, so Nagle's algorithm would only delay them.
      if (conn.remoteAddr.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
      const served = _serveConnection(conn, options.exports, log, shutdown.signal, pool, counts);
      connections.add(served);
      served.finally(() => connections.delete(served));
    }
  });

  let closed: Promise<void> | undefined;
  return {
    socketPath: options.socketPath,
    tcpAddr,
    get requests() {
      return counts.requests;
    },
    close() {
      closed ??= (async () => {
        shutdown.abort();
        for (const listener of listeners) listener.close();
        await Promise.all(accepting);
        while (connections.size > 0) await Promise.all(connections);
        if (options.socketPath !== undefined) _removeSocket(options.socketPath);
      })();
      return closed;
    },
  };
}

/** Serves one client from greeting to goodbye; never rejects. */
async function _serveConnection(
  conn: Deno.Conn,
  exports: NbdExports,
  log: (message: string, err?: unknown) => void,
  signal: AbortSignal,
  pool: BufferPool,
  counts: { requests: number },
): Promise<void> {
  let hungUp = false;
  const hangUp = () => {
    if (hungUp) return;
    hungUp = true;
    conn.close();
  };
  // Until the client reaches transmission, shutting down just hangs up on it.
  const hangUpEarly = () => hangUp();
  signal.addEventListener("abort", hangUpEarly, { once: true });
  try {
    if (signal.aborted) return;
    const reader = new BufferedReader(conn);
    const writer = new ReplyWriter(conn);
    const chosen = await negotiate(reader, writer, exports);
    signal.removeEventListener("abort", hangUpEarly);
    if (chosen === null) return;
    await transmit(reader, writer, chosen, { log, signal, hangUp, pool, counts });
  } catch (err) {
    // A client that hangs up, or that we hung up on, is not worth a word.
    if (!hungUp && !_isHangUp(err)) log(`NBD client dropped: ${_message(err)}`);
  } finally {
    signal.removeEventListener("abort", hangUpEarly);
    hangUp();
  }
}

function _isHangUp(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (
      e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.BrokenPipe ||
      e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted ||
      e instanceof Deno.errors.UnexpectedEof || e instanceof Deno.errors.NotConnected
    ) {
      return true;
    }
  }
  return false;
}

function _message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function _removeSocket(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}
