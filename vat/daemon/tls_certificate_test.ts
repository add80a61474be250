import assert from "node:assert/strict";
import { certificateFingerprint, ensureTlsCertificate } from "./tls_certificate.ts";

async function opensslFingerprint(certPath: string): Promise<string> {
  const out = await new Deno.Command("openssl", {
    args: ["x509", "-in", certPath, "-noout", "-fingerprint", "-sha256"],
  }).output();
  return new TextDecoder().decode(out.stdout).trim().replace(/^.*Fingerprint=/i, "");
}

Deno.test("ensureTlsCertificate() makes a certificate once and reuses it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const made = await ensureTlsCertificate(`${dir}/tls`, ["127.0.0.1", "vat.lan", "::1"]);
    assert.equal(made.created, true);
    assert.equal((await Deno.stat(`${dir}/tls/key.pem`)).mode! & 0o777, 0o600);
    assert.equal(made.fingerprint, await opensslFingerprint(`${dir}/tls/cert.pem`));
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), ["tls"]);
    const text = new TextDecoder().decode(
      (await new Deno.Command("openssl", {
        args: ["x509", "-in", `${dir}/tls/cert.pem`, "-noout", "-text"],
      }).output()).stdout,
    );
    assert.match(text, /IP Address:127\.0\.0\.1, DNS:vat\.lan, IP Address:0:0:0:0:0:0:0:1/);
    assert.match(text, /CA:FALSE/);
    assert.match(text, /prime256v1/);

    const again = await ensureTlsCertificate(`${dir}/tls`, ["10.0.0.1"]);
    assert.equal(again.created, false);
    assert.equal(again.fingerprint, made.fingerprint);
    assert.equal(again.keyPem, made.keyPem);

    // A directory missing its key is made again.
    await Deno.remove(`${dir}/tls/key.pem`);
    const remade = await ensureTlsCertificate(`${dir}/tls`, ["127.0.0.1"]);
    assert.equal(remade.created, true);
    assert.notEqual(remade.fingerprint, made.fingerprint);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("certificateFingerprint() refuses what is not a PEM certificate", () => {
  assert.throws(() => certificateFingerprint("-----BEGIN PRIVATE KEY-----\n"), /not a PEM/);
});
