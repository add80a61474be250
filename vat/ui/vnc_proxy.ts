/**
 * The console's WebSocket proxy: the browser's noVNC talks to the daemon (which has
 * checked its session), and the daemon relays every message to QEMU's VNC WebSocket on
 * loopback. QEMU's VNC is never exposed beyond 127.0.0.1.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/** The subprotocol that QEMU's and noVNC's WebSockets speak. */
const _PROTOCOL = "binary";

/** Answers a WebSocket upgrade by relaying it to `ws://127.0.0.1:<port>/`. */
export function proxyVnc(req: Request, port: number): Response {
  if ((req.headers.get("upgrade") ?? "").toLowerCase() !== "websocket") {
    throw new UsageError("the console's screen is a WebSocket: connect with noVNC");
  }
  const offered = (req.headers.get("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
  const { socket: browser, response } = Deno.upgradeWebSocket(
    req,
    offered.includes(_PROTOCOL) ? { protocol: _PROTOCOL } : {},
  );
  browser.binaryType = "arraybuffer";
  const qemu = new WebSocket(`ws://127.0.0.1:${port}/`, [_PROTOCOL]);
  qemu.binaryType = "arraybuffer";
  // The browser may speak before QEMU's side is open: hold its messages until then.
  const pending: (string | ArrayBuffer)[] = [];
  browser.onmessage = (e) => {
    if (qemu.readyState === WebSocket.OPEN) qemu.send(e.data);
    else pending.push(e.data);
  };
  qemu.onopen = () => {
    for (const data of pending.splice(0)) qemu.send(data);
  };
  qemu.onmessage = (e) => {
    if (browser.readyState === WebSocket.OPEN) browser.send(e.data);
  };
  const closeBoth = () => {
    for (const ws of [browser, qemu]) {
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
        try {
          ws.close();
        } catch { /* closing already */ }
      }
    }
  };
  browser.onclose = closeBoth;
  browser.onerror = closeBoth;
  qemu.onclose = closeBoth;
  qemu.onerror = closeBoth;
  return response;
}
