import assert from "node:assert/strict";
import { UsageError } from "../errors.ts";
import { DEFAULT_PORT, parseListenAddress } from "./server.ts";

Deno.test("parseListenAddress() takes ADDR:PORT, [IPv6]:PORT, ADDR and :PORT", () => {
  assert.deepEqual(parseListenAddress("0.0.0.0:80"), { hostname: "0.0.0.0", port: 80 });
  assert.deepEqual(parseListenAddress("[::1]:9000"), { hostname: "::1", port: 9000 });
  assert.deepEqual(parseListenAddress("localhost"), { hostname: "localhost", port: DEFAULT_PORT });
  assert.deepEqual(parseListenAddress(":9000"), { hostname: "127.0.0.1", port: 9000 });
  assert.throws(() => parseListenAddress("::1:80"), UsageError);
  assert.throws(() => parseListenAddress("host:99999"), UsageError);
  assert.throws(() => parseListenAddress("host:port"), UsageError);
});
