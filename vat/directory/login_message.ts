/**
 * What a VAT signs with a slot's login key to prove it knows the password
 * (docs/HTTP.md, "Directories"): a context line, the directory, the user, the slot and
 * the server's one-time challenge, so a proof is good for that one login only.
 *
 * @module
 */

/** The bytes a login proof signs. */
export function loginMessage(
  directoryId: string,
  name: string,
  kind: string,
  challenge: string,
): Uint8Array {
  return new TextEncoder().encode(
    `vat-login-v1\n${directoryId}\n${name}\n${kind}\n${challenge}`,
  );
}
