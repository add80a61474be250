/**
 * A WebSocket upgrade request written by hand, for tests that check how a server
 * answers one (a browser would hide the status of a refused upgrade).
 *
 * @module
 */

/** The bytes of a `GET path` upgrade to a binary WebSocket, with extra header lines. */
export function upgradeRequest(host: string, path: string, headers: string[] = []): Uint8Array {
  return new TextEncoder().encode(
    [
      `GET ${path} HTTP/1.1`,
      `Host: ${host}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
      "Sec-WebSocket-Protocol: binary",
      ...headers,
      "",
      "",
    ].join("\r\n"),
  );
}
