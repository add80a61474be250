/**
 * `vat`: the virtual appliance transceiver. One program for the PC (the daemon and
 * its CLI) and for administrators and servers (publish, repo, serve).
 *
 * @module
 */

import { runCli } from "./vat/cli/run_cli.ts";

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args));
}
