import { generateSigningKey } from "../auth/signing_key.ts";
import { UsageError } from "../errors.ts";
import { parseFlags, printJson } from "./args.ts";
import type { Command } from "./command.ts";

export const keygenCommand: Command = {
  name: "keygen",
  summary: "make a publisher key pair (KEY and KEY.pub)",
  usage: `vat keygen --out KEY [--json]

Writes an ed25519 private key to KEY (PKCS#8 PEM, mode 0600) and its public key id
to KEY.pub. Publishers sign versions with KEY; repositories list KEY.pub's id.`,
  async run(args) {
    const { values } = parseFlags("keygen", args, {
      out: { type: "string" },
      json: { type: "boolean" },
    });
    if (!values.out) throw new UsageError("keygen: --out KEY is required");
    const key = await generateSigningKey(values.out);
    if (values.json) printJson({ key: values.out, publicKey: key.publicKeyId });
    else console.log(`wrote ${values.out} and ${values.out}.pub\npublic key: ${key.publicKeyId}`);
    return 0;
  },
};
