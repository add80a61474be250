/**
 * The remote display's TLS certificate: self-signed, made by Debian's `openssl` on first
 * use (node:crypto cannot make certificates) and kept in the state directory as
 * `remote-display/cert.pem` and `remote-display/key.pem` (mode 0600), so that its
 * fingerprint, which users compare in the remote browser, stays the same across starts.
 *
 * @module
 */

import { createHash, randomBytes } from "node:crypto";
import { NotFoundError, VatError } from "../errors.ts";
import { syncDir } from "../fs_atomic.ts";

/** A certificate and its private key, PEM. */
export interface TlsCertificate {
  certPem: string;
  keyPem: string;
  /** SHA-256 of the certificate's DER bytes: upper-case hex pairs joined by ":". */
  fingerprint: string;
  /** Whether this call made it (false: it was made at an earlier start). */
  created: boolean;
}

const _OPENSSL = "openssl";

/**
 * Loads the certificate in `dir`, or makes one valid for `names` (host names and IP
 * addresses) when there is none. It is made in a sibling temporary directory that is
 * renamed into place, so `dir` holds either both files or none.
 */
export async function ensureTlsCertificate(
  dir: string,
  names: string[],
): Promise<TlsCertificate> {
  const existing = await _load(dir);
  if (existing) return { ...existing, created: false };
  // Only the daemon owning the state directory writes here; a `dir` that lacks one of
  // its files was damaged by hand, and a new certificate replaces it.
  await Deno.remove(dir, { recursive: true }).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
  const tmp = `${dir}.tmp-${randomBytes(6).toString("hex")}`;
  await Deno.mkdir(tmp, { mode: 0o700 });
  try {
    await Deno.writeTextFile(`${tmp}/openssl.cnf`, _opensslConfig(names));
    await _runOpenssl([
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-sha256",
      "-days",
      "3650",
      "-noenc",
      "-config",
      `${tmp}/openssl.cnf`,
      "-keyout",
      `${tmp}/key.pem`,
      "-out",
      `${tmp}/cert.pem`,
    ]);
    await Deno.chmod(`${tmp}/key.pem`, 0o600);
    await Deno.remove(`${tmp}/openssl.cnf`);
    await Deno.rename(tmp, dir);
  } catch (err) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw err;
  }
  await syncDir(`${dir}/..`);
  const made = await _load(dir);
  if (!made) throw new VatError(`openssl made no certificate in ${dir}`);
  return { ...made, created: true };
}

/** The SHA-256 fingerprint of a PEM certificate, as browsers show it (`AB:CD:...`). */
export function certificateFingerprint(certPem: string): string {
  const base64 = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/
    .exec(certPem)?.[1];
  if (!base64) throw new VatError("not a PEM certificate");
  const der = Buffer.from(base64.replace(/\s+/g, ""), "base64");
  return createHash("sha256").update(der).digest("hex").toUpperCase().match(/../g)!.join(":");
}

async function _load(dir: string): Promise<Omit<TlsCertificate, "created"> | null> {
  try {
    const certPem = await Deno.readTextFile(`${dir}/cert.pem`);
    const keyPem = await Deno.readTextFile(`${dir}/key.pem`);
    return { certPem, keyPem, fingerprint: certificateFingerprint(certPem) };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/**
 * A server certificate (not a CA: rustls and Firefox refuse a CA certificate as a
 * server's) for `names`. The names were checked by `parseListenAddress` or come from
 * the system, and are filtered again here because they are written into a config file.
 */
function _opensslConfig(names: string[]): string {
  const san = names
    .filter((name) => /^[A-Za-z0-9.:-]+$/.test(name))
    .map((name) => (/^[0-9.]+$/.test(name) || name.includes(":") ? `IP:${name}` : `DNS:${name}`));
  return [
    "[req]",
    "distinguished_name = dn",
    "x509_extensions = server",
    "prompt = no",
    "[dn]",
    "CN = vat remote display",
    "[server]",
    "basicConstraints = critical, CA:FALSE",
    "keyUsage = critical, digitalSignature",
    "extendedKeyUsage = serverAuth",
    "subjectKeyIdentifier = hash",
    ...(san.length > 0 ? [`subjectAltName = ${san.join(", ")}`] : []),
    "",
  ].join("\n");
}

async function _runOpenssl(args: string[]): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(_OPENSSL, { args, stdin: "null" }).output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new NotFoundError(
        "openssl is not installed; the remote display needs it to make its TLS certificate " +
          "(install it: apt-get install openssl)",
        { cause: err },
      );
    }
    throw err;
  }
  if (!output.success) {
    throw new VatError(
      `openssl could not make the remote display's certificate: ${
        new TextDecoder().decode(output.stderr).trim()
      }`,
    );
  }
}
