/**
 * `startLinkProxy()`: a TCP proxy on loopback that behaves like a slow network link
 * between its clients and one server, for benchmarks that must not leave the machine.
 *
 * The link is modelled per direction as one FIFO wire of fixed bandwidth shared by
 * every connection, followed by a fixed one-way delay (half the round trip): a segment
 * read from one side leaves when the wire is free, takes `bytes / rate` to cross it,
 * and arrives `rttMs / 2` later. A new connection costs one round trip before its
 * first bytes leave, as a TCP handshake does. Not modelled: loss, TCP slow start and
 * receive windows (the model is a well-tuned long-lived connection), and the ~3% of
 * TCP/IP header bytes a real link also carries.
 *
 * @module
 */

/** The link's shape. */
export interface LinkShape {
  /** Bandwidth in bits per second, each direction. */
  rateBitsPerSec: number;
  /** Round-trip time in milliseconds. */
  rttMs: number;
}

/** Bytes that crossed the link since the last `resetStats()`. */
export interface LinkStats {
  /** From the server to the clients. */
  downBytes: number;
  /** From the clients to the server. */
  upBytes: number;
  connections: number;
}

/** A running proxy. */
export interface LinkProxy {
  /** The loopback port clients connect to. */
  readonly port: number;
  stats(): LinkStats;
  resetStats(): void;
  /** Stops accepting and drops every connection. */
  close(): Promise<void>;
}

/** Read size: about what a NIC hands over in one interrupt with GRO. */
const _SEGMENT_BYTES = 64 * 1024;
/**
 * Bytes a connection may have in the proxy, read but not yet delivered, before the
 * proxy stops reading from its sender (the sender's socket buffer then fills, as
 * behind a real bottleneck). Several bandwidth-delay products of the fastest link.
 */
const _MAX_QUEUED_BYTES = 1024 * 1024;

/** One direction's wire: when it is next free, in `performance.now()` milliseconds. */
interface _Wire {
  freeAtMs: number;
  msPerByte: number;
  delayMs: number;
}

/** Starts a proxy on 127.0.0.1 (a free port) in front of `target`. */
export function startLinkProxy(
  target: { hostname: string; port: number },
  shape: LinkShape,
): LinkProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  const msPerByte = 8000 / shape.rateBitsPerSec;
  const down: _Wire = { freeAtMs: 0, msPerByte, delayMs: shape.rttMs / 2 };
  const up: _Wire = { freeAtMs: 0, msPerByte, delayMs: shape.rttMs / 2 };
  const stats: LinkStats = { downBytes: 0, upBytes: 0, connections: 0 };
  const open = new Set<Deno.Conn>();
  const served = new Set<Promise<void>>();

  const accepting = (async () => {
    for (;;) {
      let client: Deno.TcpConn;
      try {
        client = await listener.accept();
      } catch (err) {
        if (err instanceof Deno.errors.BadResource) return; // closed
        throw err;
      }
      const handshakeDoneMs = performance.now() + shape.rttMs;
      stats.connections++;
      const one = _serve(client, target, handshakeDoneMs, up, down, stats, open);
      served.add(one);
      one.finally(() => served.delete(one));
    }
  })();

  return {
    port: (listener.addr as Deno.NetAddr).port,
    stats: () => ({ ...stats }),
    resetStats() {
      stats.downBytes = 0;
      stats.upBytes = 0;
      stats.connections = 0;
    },
    async close() {
      listener.close();
      await accepting;
      for (const conn of open) _closeQuietly(conn);
      await Promise.allSettled([...served]);
    },
  };
}

async function _serve(
  client: Deno.TcpConn,
  target: { hostname: string; port: number },
  handshakeDoneMs: number,
  up: _Wire,
  down: _Wire,
  stats: LinkStats,
  open: Set<Deno.Conn>,
): Promise<void> {
  open.add(client);
  let server: Deno.TcpConn | undefined;
  try {
    server = await Deno.connect({ ...target, transport: "tcp" });
    open.add(server);
    client.setNoDelay(true);
    server.setNoDelay(true);
    await Promise.all([
      _pump(client, server, up, handshakeDoneMs, (n) => stats.upBytes += n),
      _pump(server, client, down, 0, (n) => stats.downBytes += n),
    ]);
  } catch {
    // A peer that hangs up mid-stream ends the connection; either side sees the close.
  } finally {
    _closeQuietly(client);
    open.delete(client);
    if (server) {
      _closeQuietly(server);
      open.delete(server);
    }
  }
}

/** Moves `from`'s bytes to `to` across `wire`, then half-closes `to`. */
async function _pump(
  from: Deno.TcpConn,
  to: Deno.TcpConn,
  wire: _Wire,
  notBeforeMs: number,
  count: (bytes: number) => void,
): Promise<void> {
  const queue: { data: Uint8Array; arriveAtMs: number }[] = [];
  let queuedBytes = 0;
  let wake: (() => void) | undefined;
  let ended = false;
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const waitForPoke = () => new Promise<void>((resolve) => wake = resolve);

  const reading = (async () => {
    try {
      for (;;) {
        while (queuedBytes >= _MAX_QUEUED_BYTES) await waitForPoke();
        const buffer = new Uint8Array(_SEGMENT_BYTES);
        const n = await from.read(buffer);
        if (n === null) break;
        const now = performance.now();
        const leaveAt = Math.max(now, wire.freeAtMs, notBeforeMs);
        wire.freeAtMs = leaveAt + n * wire.msPerByte;
        queue.push({ data: buffer.subarray(0, n), arriveAtMs: wire.freeAtMs + wire.delayMs });
        queuedBytes += n;
        poke();
      }
    } finally {
      ended = true;
      poke();
    }
  })();

  const writing = (async () => {
    for (;;) {
      const head = queue[0];
      if (head === undefined) {
        if (ended) break;
        await waitForPoke();
        continue;
      }
      const waitMs = head.arriveAtMs - performance.now();
      if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
      let done = 0;
      while (done < head.data.length) done += await to.write(head.data.subarray(done));
      queue.shift();
      queuedBytes -= head.data.length;
      count(head.data.length);
      poke();
    }
    await to.closeWrite();
  })();

  await Promise.all([reading, writing]);
}

function _closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch (err) {
    if (!(err instanceof Deno.errors.BadResource)) throw err;
  }
}
