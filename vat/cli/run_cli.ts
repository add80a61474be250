/**
 * The `vat` command line: finds the verb, runs it, and turns errors into a message
 * and an exit code (1 for failures, 2 for usage errors).
 *
 * @module
 */

import { UsageError, VatError } from "../errors.ts";
import type { Command } from "./command.ts";
import { exportCommand } from "./export_command.ts";
import { keygenCommand } from "./keygen_command.ts";
import { nbdCommand } from "./nbd_command.ts";
import {
  applianceAddCommand,
  consoleCommand,
  deleteCommand,
  hoardCommand,
  lsCommand,
  resetCommand,
  startCommand,
  statusCommand,
  stopCommand,
  suspendCommand,
} from "./appliance_commands.ts";
import { daemonCommand } from "./daemon_command.ts";
import {
  backupNowCommand,
  backupStatusCommand,
  snapshotsCommand,
  undoCommand,
} from "./backup_commands.ts";
import { VERSION } from "./version.ts";
import { publishCommand } from "./publish_command.ts";
import { serveCommand } from "./serve_command.ts";
import { statsCommand } from "./stats_command.ts";
import { traceRecordCommand } from "./trace_command.ts";
import { releaseLsCommand, releasePublishCommand } from "./release_commands.ts";
import { updateApplyCommand, updateCheckCommand, updateStatusCommand } from "./update_commands.ts";
import { loginCommand, logoutCommand, whoamiCommand } from "./login_commands.ts";
import {
  directoryInitCommand,
  userAddCommand,
  userDisableCommand,
  userEnableCommand,
  userGrantCommand,
  userLsCommand,
  userPasswdCommand,
  userRevokeCommand,
  userShowCommand,
} from "./user_commands.ts";
import {
  repoAddKeyCommand,
  repoGcCommand,
  repoInitCommand,
  repoKeysCommand,
  repoLsCommand,
  repoRefreshCommand,
  repoRemoveKeyCommand,
  repoShowCommand,
  repoVerifyCommand,
} from "./repo_commands.ts";

/** Every verb, in the order `vat help` lists them. */
export const COMMANDS: Command[] = [
  daemonCommand,
  loginCommand,
  logoutCommand,
  whoamiCommand,
  applianceAddCommand,
  lsCommand,
  startCommand,
  stopCommand,
  suspendCommand,
  resetCommand,
  hoardCommand,
  deleteCommand,
  statusCommand,
  statsCommand,
  consoleCommand,
  backupStatusCommand,
  backupNowCommand,
  snapshotsCommand,
  undoCommand,
  keygenCommand,
  repoInitCommand,
  repoAddKeyCommand,
  repoRemoveKeyCommand,
  repoKeysCommand,
  repoRefreshCommand,
  repoLsCommand,
  repoShowCommand,
  repoVerifyCommand,
  repoGcCommand,
  publishCommand,
  traceRecordCommand,
  releasePublishCommand,
  releaseLsCommand,
  updateCheckCommand,
  updateApplyCommand,
  updateStatusCommand,
  exportCommand,
  directoryInitCommand,
  userAddCommand,
  userGrantCommand,
  userRevokeCommand,
  userDisableCommand,
  userEnableCommand,
  userLsCommand,
  userShowCommand,
  userPasswdCommand,
  serveCommand,
  nbdCommand,
];

function help(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    `vat ${VERSION}: the virtual appliance transceiver`,
    "",
    "usage: vat COMMAND [ARGS...]    (vat COMMAND --help for its flags)",
    "",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
  ].join("\n");
}

/** Runs the CLI with `args`; returns the process exit code. */
export async function runCli(args: string[]): Promise<number> {
  // `vat` alone, or with only flags, runs the daemon.
  if (
    args.length === 0 || (args[0].startsWith("--") && !["--help", "--version"].includes(args[0]))
  ) {
    args = ["daemon", ...args];
  }
  if (args[0] === "help" || args[0] === "--help" || args[0] === "-h") {
    console.log(help());
    return 0;
  }
  if (args[0] === "--version" || args[0] === "version") {
    console.log(`vat ${VERSION}`);
    return 0;
  }
  const command = COMMANDS.find((c) => {
    const words = c.name.split(" ");
    return words.every((w, i) => args[i] === w);
  });
  if (!command) {
    const group = COMMANDS.filter((c) => c.name.startsWith(`${args[0]} `));
    const hint = group.length
      ? `; "${args[0]}" takes: ${group.map((c) => c.name.split(" ")[1]).join(", ")}`
      : "";
    console.error(`vat: unknown command "${args.join(" ")}"${hint} (see: vat help)`);
    return 2;
  }
  const rest = args.slice(command.name.split(" ").length);
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(command.usage);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof VatError) {
      console.error(`vat ${command.name}: ${err.message}`);
      return err instanceof UsageError ? 2 : 1;
    }
    // What the system refused (a permission, a missing file) is said in one line that
    // names the path; anything else is a bug, and its stack is what helps.
    if (_isSystemError(err)) {
      console.error(`vat ${command.name}: ${(err as Error).message}`);
      return 1;
    }
    throw err;
  }
}

function _isSystemError(err: unknown): boolean {
  if (Object.values(Deno.errors).some((kind) => err instanceof kind)) return true;
  // node:sqlite's errors: "unable to open database file", "attempt to write a readonly database".
  return (err as { code?: string })?.code === "ERR_SQLITE_ERROR";
}
