import { UsageError } from "../errors.ts";
import {
  DEFAULT_HOSTNAME,
  DEFAULT_PORT,
  parseListenAddress,
  startRepositoryServer,
} from "../serve/server.ts";
import { parseFlags } from "./args.ts";
import type { Command } from "./command.ts";

export const serveCommand: Command = {
  name: "serve",
  summary: "serve repositories over HTTP (read by anyone, written by publisher keys)",
  usage: `vat serve --root DIR [--listen ADDR:PORT] [--allow-key KEY.pub ...]

Serves every repository under DIR (default address ${DEFAULT_HOSTNAME}:${DEFAULT_PORT},
loopback unless told otherwise). Reads need nothing; writes must be signed by a key
listed in the repository's repo.json or given with --allow-key (needed to create
repositories). The protocol is in docs/FORMAT.md.`,
  async run(args) {
    const { values, positionals } = parseFlags("serve", args, {
      root: { type: "string" },
      listen: { type: "string" },
      "allow-key": { type: "string", multiple: true },
    });
    if (positionals.length > 0) {
      throw new UsageError("serve: unexpected arguments (use --root DIR)");
    }
    if (!values.root) throw new UsageError("serve: --root DIR is required");
    const address = values.listen ? parseListenAddress(values.listen) : undefined;
    const server = await startRepositoryServer({
      root: values.root,
      hostname: address?.hostname,
      port: address?.port,
      allowKeys: values["allow-key"],
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
