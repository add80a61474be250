import { generateSigningKey, keyFingerprint } from "../auth/signing_key.ts";
import { generateUserKey } from "../auth/user_key.ts";
import { UsageError } from "../errors.ts";
import { parseFlags, printJson } from "./args.ts";
import type { Command } from "./command.ts";

export const keygenCommand: Command = {
  name: "keygen",
  summary: "make a publisher key pair (KEY and KEY.pub), or a user key (--user)",
  usage: `vat keygen --out KEY [--json]
vat keygen --user --out FILE [--json]

Writes an ed25519 private key to KEY (PKCS#8 PEM, mode 0600) and its public key id
to KEY.pub. Publishers sign versions with KEY; repositories list KEY.pub's id.
With --user, writes a user key instead (mode 0600): the secret that encrypts and signs
the user's data repository (vat --data-repo REPO --user-key FILE). Keep a copy: without
it the backups cannot be read by anyone.`,
  async run(args) {
    const { values } = parseFlags("keygen", args, {
      out: { type: "string" },
      json: { type: "boolean" },
      user: { type: "boolean" },
    });
    if (!values.out) throw new UsageError("keygen: --out KEY is required");
    if (values.user) {
      const key = await generateUserKey(values.out);
      if (values.json) printJson({ key: values.out, signingKey: key.signingKey.publicKeyId });
      else console.log(`wrote user key ${values.out} (keep a copy somewhere safe)`);
      return 0;
    }
    const key = await generateSigningKey(values.out);
    const fingerprint = keyFingerprint(key.publicKeyId);
    if (values.json) printJson({ key: values.out, publicKey: key.publicKeyId, fingerprint });
    else {
      console.log(
        `wrote ${values.out} and ${values.out}.pub\npublic key: ${key.publicKeyId}\n` +
          `fingerprint: ${fingerprint}`,
      );
    }
    return 0;
  },
};
