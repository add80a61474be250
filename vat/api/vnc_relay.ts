/**
 * The screen relay: the browser's noVNC speaks RFB inside a WebSocket to the daemon,
 * which has checked the session (or the token), and the daemon relays the bytes to and
 * from QEMU's VNC on its Unix socket in the 0700 run directory. QEMU's VNC has no
 * authentication of its own and listens on no TCP port: this relay is the only way to
 * an appliance's screen and keyboard.
 *
 * Bounds: a few relays per appliance (more are refused with 429); QEMU's output is
 * read only while the browser has less than `highWaterBytes` unsent (so a slow browser
 * slows QEMU's VNC down, which then sends fewer updates, instead of filling the
 * daemon's memory); the browser's input waiting to be written to QEMU is capped (RFB
 * input is a few bytes per key or pointer event). A relay closes when either side
 * does, when the appliance's QEMU ends, and when the browser's session ends (sign-out
 * at once, expiry at the next check).
 *
 * @module
 */

import { HTTPException } from "hono/http-exception";
import { ConflictError, UsageError } from "../errors.ts";

/** The WebSocket subprotocol noVNC asks for: RFB in binary messages. */
const _PROTOCOL = "binary";
const _READ_BYTES = 64 * 1024;
const _DRAIN_POLL_MS = 10;
/** How long to keep trying while QEMU's listen queue is full. */
const _CONNECT_RETRY_MS = 3000;

/** What a relay connects to: one running appliance's screen. */
export interface ScreenTarget {
  /** The appliance: for messages and the per-appliance limit. */
  name: string;
  /** QEMU's VNC Unix socket. */
  socketPath: string;
  /** Settles when the appliance's QEMU has ended; its relays are closed then. */
  ended: Promise<unknown>;
}

/** Who opened a relay, and whether they still may watch. */
export interface ScreenViewer {
  /** The browser session that opened it, if it came with a cookie (not the token). */
  session?: string;
  /** Asked every `authCheckMs`; the relay closes once it answers false. */
  stillAllowed(): boolean;
}

/** Options of `ScreenRelays`. */
export interface ScreenRelaysOptions {
  /** Relays open at once per appliance. Default 4. */
  perAppliance?: number;
  /** Stop reading QEMU while the browser has this much unsent. Default 1 MiB. */
  highWaterBytes?: number;
  /** The most browser input waiting to be written to QEMU. Default 256 KiB. */
  maxPendingInputBytes?: number;
  /** How often a relay asks `stillAllowed()`. Default 10 s. */
  authCheckMs?: number;
  /** Close a browser that does not answer a ping within this many seconds. Default 30. */
  idleTimeoutSeconds?: number;
}

/** The daemon's open screen relays, bounded per appliance. */
export class ScreenRelays {
  readonly #perAppliance: number;
  readonly #highWaterBytes: number;
  readonly #maxPendingInputBytes: number;
  readonly #authCheckMs: number;
  readonly #idleTimeoutSeconds: number;
  readonly #open = new Set<_Relay>();
  /** Relays per appliance, counted from before the connection to QEMU is made. */
  readonly #counts = new Map<string, number>();

  constructor(options: ScreenRelaysOptions = {}) {
    this.#perAppliance = options.perAppliance ?? 4;
    this.#highWaterBytes = options.highWaterBytes ?? 1024 * 1024;
    this.#maxPendingInputBytes = options.maxPendingInputBytes ?? 256 * 1024;
    this.#authCheckMs = options.authCheckMs ?? 10_000;
    this.#idleTimeoutSeconds = options.idleTimeoutSeconds ?? 30;
  }

  /** How many relays to `name`'s screen are open. */
  count(name: string): number {
    return this.#counts.get(name) ?? 0;
  }

  /**
   * Answers the WebSocket upgrade `req` by relaying it to `target`'s VNC socket.
   * Throws `UsageError` (400) for a request that is not a WebSocket upgrade,
   * `HTTPException` 429 when the appliance has its limit of relays open, and
   * `ConflictError` (409) when its VNC socket does not answer (it is not running), and
   * `HTTPException` 503 when QEMU does not accept the connection within a few seconds.
   * The caller has authenticated the request.
   */
  async open(req: Request, target: ScreenTarget, viewer: ScreenViewer): Promise<Response> {
    if ((req.headers.get("upgrade") ?? "").toLowerCase() !== "websocket") {
      throw new UsageError("the screen is a WebSocket: connect with noVNC");
    }
    const { name } = target;
    if (this.count(name) >= this.#perAppliance) {
      throw new HTTPException(429, {
        message: `"${name}"'s screen is already open in ${this.#perAppliance} places; ` +
          "close one of them and try again",
      });
    }
    // Counted before the await below, so that concurrent upgrades cannot pass the limit.
    this.#counts.set(name, this.count(name) + 1);
    let conn: Deno.UnixConn;
    try {
      conn = await _connect(target.socketPath);
    } catch (err) {
      this.#release(name);
      if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.ConnectionRefused) {
        throw new ConflictError(`"${name}" has no screen now: it is not running`, {
          cause: err,
        });
      }
      if (err instanceof Deno.errors.WouldBlock) {
        throw new HTTPException(503, {
          message: `"${name}"'s screen is not taking connections now; try again`,
          cause: err,
        });
      }
      throw err;
    }
    const offered = (req.headers.get("sec-websocket-protocol") ?? "").split(",")
      .map((p) => p.trim());
    let upgraded: { socket: WebSocket; response: Response };
    try {
      upgraded = Deno.upgradeWebSocket(req, {
        ...(offered.includes(_PROTOCOL) ? { protocol: _PROTOCOL } : {}),
        idleTimeout: this.#idleTimeoutSeconds,
      });
    } catch (err) {
      conn.close();
      this.#release(name);
      throw new UsageError(`not a valid WebSocket upgrade: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const relay = new _Relay(upgraded.socket, conn, {
      highWaterBytes: this.#highWaterBytes,
      maxPendingInputBytes: this.#maxPendingInputBytes,
      session: viewer.session,
      onClosed: () => {
        this.#open.delete(relay);
        this.#release(name);
      },
    });
    this.#open.add(relay);
    const stopped = () => relay.close(1000, `${name} stopped`);
    target.ended.then(stopped, stopped);
    relay.checkEvery(this.#authCheckMs, () => viewer.stillAllowed());
    return upgraded.response;
  }

  /** Closes every relay opened by browser session `id` (it signed out). */
  closeSession(id: string): void {
    for (const relay of [...this.#open]) {
      if (relay.session === id) relay.close(1008, "signed out");
    }
  }

  /** Closes every relay. */
  closeAll(): void {
    for (const relay of [...this.#open]) relay.close(1001, "the VAT is stopping");
  }

  #release(name: string): void {
    const left = this.count(name) - 1;
    if (left > 0) this.#counts.set(name, left);
    else this.#counts.delete(name);
  }
}

/**
 * Connects to QEMU's VNC socket. QEMU listens with a backlog of one connection and
 * accepts in its main loop, so a few browsers connecting at once (or a busy QEMU) find
 * the queue full: Linux then fails the connect with EAGAIN at once instead of waiting.
 * Try again for a few seconds before giving up.
 */
async function _connect(path: string): Promise<Deno.UnixConn> {
  const deadline = Date.now() + _CONNECT_RETRY_MS;
  for (let delayMs = 5;; delayMs = Math.min(delayMs * 2, 100)) {
    try {
      return await Deno.connect({ transport: "unix", path });
    } catch (err) {
      if (!(err instanceof Deno.errors.WouldBlock) || Date.now() > deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, delayMs));
  }
}

/** One browser's WebSocket joined to one connection to QEMU's VNC socket. */
class _Relay {
  readonly session?: string;
  readonly #ws: WebSocket;
  readonly #conn: Deno.UnixConn;
  readonly #highWaterBytes: number;
  readonly #maxPendingInputBytes: number;
  readonly #onClosed: () => void;
  #closed = false;
  #pendingInputBytes = 0;
  /** Writes to QEMU, one after the other, in the order the browser sent them. */
  #writing: Promise<void> = Promise.resolve();
  #timer?: ReturnType<typeof setInterval>;

  constructor(
    ws: WebSocket,
    conn: Deno.UnixConn,
    options: {
      highWaterBytes: number;
      maxPendingInputBytes: number;
      session?: string;
      onClosed: () => void;
    },
  ) {
    this.#ws = ws;
    this.#conn = conn;
    this.#highWaterBytes = options.highWaterBytes;
    this.#maxPendingInputBytes = options.maxPendingInputBytes;
    this.session = options.session;
    this.#onClosed = options.onClosed;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      if (this.#closed) ws.close(1000);
      else this.#pumpFromQemu();
    };
    ws.onmessage = (e) => this.#fromBrowser(e.data);
    ws.onclose = () => this.close();
    ws.onerror = () => this.close();
  }

  /** Asks `allowed` every `ms` and closes the relay once it says no. */
  checkEvery(ms: number, allowed: () => boolean): void {
    if (this.#closed) return;
    this.#timer = setInterval(() => {
      if (!allowed()) this.close(1008, "the session ended");
    }, ms);
  }

  /** Closes both sides (once); `code` and `reason` go to the browser. */
  close(code = 1000, reason = ""): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    try {
      this.#conn.close();
    } catch {
      // Closed already (QEMU went first).
    }
    if (this.#ws.readyState === WebSocket.OPEN) {
      try {
        this.#ws.close(code, reason);
      } catch {
        // Closing already.
      }
    }
    // A socket still CONNECTING is closed by `onopen` as soon as it opens.
    this.#onClosed();
  }

  async #pumpFromQemu(): Promise<void> {
    const buf = new Uint8Array(_READ_BYTES);
    try {
      while (!this.#closed) {
        // Backpressure: leave QEMU's bytes in its socket while the browser lags.
        while (this.#ws.bufferedAmount > this.#highWaterBytes && !this.#closed) {
          await new Promise((r) => setTimeout(r, _DRAIN_POLL_MS));
        }
        if (this.#closed) break;
        const n = await this.#conn.read(buf);
        if (n === null) break;
        if (this.#ws.readyState !== WebSocket.OPEN) break;
        this.#ws.send(buf.slice(0, n));
      }
    } catch {
      // The socket was closed under the read (by `close()`), or QEMU went away.
    }
    this.close(1000, "the screen closed");
  }

  #fromBrowser(data: unknown): void {
    if (this.#closed) return;
    if (!(data instanceof ArrayBuffer)) {
      this.close(1003, "the screen speaks RFB in binary messages");
      return;
    }
    const bytes = new Uint8Array(data);
    this.#pendingInputBytes += bytes.length;
    if (this.#pendingInputBytes > this.#maxPendingInputBytes) {
      this.close(1008, "too much input waiting for the screen");
      return;
    }
    this.#writing = this.#writing.then(async () => {
      try {
        for (let off = 0; off < bytes.length && !this.#closed;) {
          off += await this.#conn.write(bytes.subarray(off));
        }
      } catch {
        this.close(1011, "the screen stopped taking input");
      }
      this.#pendingInputBytes -= bytes.length;
    });
  }
}
