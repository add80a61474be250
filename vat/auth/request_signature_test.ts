import assert from "node:assert/strict";
import { generateSigningKey } from "../auth/signing_key.ts";
import { parseAuthorization, sha256Hex, signRequest, verifyRequest } from "./request_signature.ts";

const body = new TextEncoder().encode("manifest");

async function withKey(fn: (key: Awaited<ReturnType<typeof generateSigningKey>>) => void) {
  const dir = await Deno.makeTempDir();
  try {
    fn(await generateSigningKey(`${dir}/k`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("signRequest() makes a header that verifyRequest() accepts for that request only", async () => {
  await withKey((key) => {
    const header = signRequest(
      key,
      { method: "PUT", host: "127.0.0.1:8455", target: "/a/latest", ifNoneMatch: "*", body },
      1234,
    );
    const signature = parseAuthorization(header)!;
    assert.equal(signature.keyId, key.publicKeyId);
    assert.equal(signature.timestampMs, 1234);
    const request = {
      method: "PUT",
      host: "127.0.0.1:8455",
      target: "/a/latest",
      ifNoneMatch: "*",
      bodySha256: sha256Hex(body),
      bodyBytes: body.length,
    };
    assert.equal(verifyRequest(signature, request), true);
    for (
      const changed of [
        { method: "DELETE" },
        { host: "127.0.0.1:8456" },
        { host: "evil.example:8455" },
        { bodyBytes: body.length + 1 },
        { target: "/b/latest" },
        { target: "/a/latest?x" },
        { ifNoneMatch: "" },
        { bodySha256: sha256Hex(new Uint8Array(0)) },
      ]
    ) {
      assert.equal(
        verifyRequest(signature, { ...request, ...changed }),
        false,
        JSON.stringify(changed),
      );
    }
    assert.equal(verifyRequest({ ...signature, timestampMs: 1235 }, request), false);
    assert.equal(verifyRequest({ ...signature, nonce: "A".repeat(22) }, request), false);
  });
});

Deno.test("signRequest() signs each request with a fresh nonce", async () => {
  await withKey((key) => {
    const request = { method: "DELETE", host: "h", target: "/x", body: new Uint8Array(0) };
    const a = parseAuthorization(signRequest(key, request, 1))!;
    const b = parseAuthorization(signRequest(key, request, 1))!;
    assert.notEqual(a.nonce, b.nonce);
    assert.notEqual(a.signature, b.signature);
  });
});

Deno.test("parseAuthorization() ignores other schemes and explains a malformed header", () => {
  assert.equal(parseAuthorization(undefined), null);
  assert.equal(parseAuthorization("Basic dXNlcjpwYXNz"), null);
  assert.throws(
    () => parseAuthorization("Vat-Ed25519 key=ed25519:x, ts=1"),
    /needs key=, ts=, nonce= and sig=/,
  );
  assert.throws(
    () => parseAuthorization("Vat-Ed25519 key=k, ts=soon, nonce=AAAAAAAAAAAAAAAAAAAAAA, sig=s"),
    /not a time/,
  );
  assert.throws(() => parseAuthorization("Vat-Ed25519 garbage"), /not name=value/);
});
