import assert from "node:assert/strict";
import { isUnspecifiedAddress, parseListenAddress, secureCookies } from "./remote_display.ts";

Deno.test("parseListenAddress() reads host, IPv4 and bracketed IPv6 addresses", () => {
  assert.deepEqual(parseListenAddress("0.0.0.0:8443"), { hostname: "0.0.0.0", port: 8443 });
  assert.deepEqual(parseListenAddress("[::]:0"), { hostname: "::", port: 0 });
  assert.deepEqual(parseListenAddress("[fe80::1]:443"), { hostname: "fe80::1", port: 443 });
  assert.deepEqual(parseListenAddress("vat.lan:8443"), { hostname: "vat.lan", port: 8443 });
});

Deno.test("parseListenAddress() refuses what is not ADDR:PORT", () => {
  for (const bad of ["8443", "0.0.0.0", ":8443", "::1:8443", "[vat]:1", "a b:1", "-x:1", "h:p"]) {
    assert.throws(() => parseListenAddress(bad), /is not ADDR:PORT/, bad);
  }
  assert.throws(() => parseListenAddress("0.0.0.0:65536"), /65536 is not a port/);
});

Deno.test("isUnspecifiedAddress() knows the any-addresses", () => {
  assert.equal(isUnspecifiedAddress("0.0.0.0"), true);
  assert.equal(isUnspecifiedAddress("::"), true);
  assert.equal(isUnspecifiedAddress("127.0.0.1"), false);
  assert.equal(isUnspecifiedAddress("vat.lan"), false);
});

const info = {} as Deno.ServeHandlerInfo<Deno.NetAddr>;

Deno.test("secureCookies() makes every cookie Secure and keeps the rest", async () => {
  const handler = secureCookies(() => {
    const headers = new Headers({ "content-type": "application/json", "x-other": "1" });
    headers.append("set-cookie", "a=1; Path=/; HttpOnly");
    headers.append("set-cookie", "b=2; Secure; Path=/");
    return new Response('{"ok":true}', { status: 201, headers });
  });
  const res = await handler(new Request("https://vat/"), info);
  assert.equal(res.status, 201);
  assert.equal(res.headers.get("x-other"), "1");
  assert.deepEqual(res.headers.getSetCookie(), [
    "a=1; Path=/; HttpOnly; Secure",
    "b=2; Secure; Path=/",
  ]);
  assert.deepEqual(await res.json(), { ok: true });
});

Deno.test("secureCookies() passes responses without cookies through untouched", async () => {
  const original = new Response("x");
  const res = await secureCookies(() => original)(new Request("https://vat/"), info);
  assert.equal(res, original);
});
