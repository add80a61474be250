import { UsageError } from "../errors.ts";
import {
  DEFAULT_HOSTNAME,
  DEFAULT_PORT,
  parseListenAddress,
  startRepositoryServer,
  STATE_DIR_NAME,
} from "../serve/server.ts";
import { parseFlags } from "./args.ts";
import type { Command } from "./command.ts";

export const serveCommand: Command = {
  name: "serve",
  summary: "serve repositories over HTTP (read by anyone, written by publisher keys)",
  usage: `vat serve --root DIR [--listen ADDR:PORT] [--allow-key KEY.pub ...] [--state DIR]
          [--body-timeout SECONDS] [--host NAME:PORT ...]

Serves every repository under DIR (default address ${DEFAULT_HOSTNAME}:${DEFAULT_PORT},
loopback unless told otherwise). Reads need nothing; writes must be signed by a key
listed in the repository's repo.json or given with --allow-key (needed to create
repositories). Signed requests seen in the last 10 minutes are remembered in
--state DIR (default ROOT/${STATE_DIR_NAME}), so a restart does not let them be replayed.
A write's body that stalls for --body-timeout seconds (default 30) is dropped.
Writes are signed for the Host they are sent to; with --host (the names clients use,
e.g. repo.example:8455) a write signed for any other name is refused.
The protocol is in docs/HTTP.md; its limits in docs/SECURITY.md.`,
  async run(args) {
    const { values, positionals } = parseFlags("serve", args, {
      root: { type: "string" },
      listen: { type: "string" },
      "allow-key": { type: "string", multiple: true },
      state: { type: "string" },
      "body-timeout": { type: "string" },
      host: { type: "string", multiple: true },
    });
    if (positionals.length > 0) {
      throw new UsageError("serve: unexpected arguments (use --root DIR)");
    }
    if (!values.root) throw new UsageError("serve: --root DIR is required");
    const address = values.listen ? parseListenAddress(values.listen) : undefined;
    const bodyTimeout = values["body-timeout"];
    const bodyTimeoutS = bodyTimeout === undefined ? 30 : Number(bodyTimeout);
    if (!(bodyTimeoutS > 0 && bodyTimeoutS <= 3600)) {
      throw new UsageError(`serve: --body-timeout ${bodyTimeout} is not 0 < SECONDS <= 3600`);
    }
    const server = await startRepositoryServer({
      root: values.root,
      hostname: address?.hostname,
      port: address?.port,
      allowKeys: values["allow-key"],
      stateDir: values.state,
      bodyTimeoutMs: bodyTimeoutS * 1000,
      hosts: values.host,
    });
    console.log(`serving ${values.root} at ${server.url}`);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
    });
    // Requests in flight get two seconds to finish; idle keep-alive connections
    // would otherwise hold the shutdown open for as long as clients keep them.
    await Promise.race([server.close(), new Promise((r) => setTimeout(r, 2000))]);
    return 0;
  },
};
