/**
 * The backup verbs, sent to the running daemon: `backup status`, `backup now`,
 * `snapshots` and `undo` (docs/BACKUP.md).
 *
 * @module
 */

import { connectDaemon, expectOk } from "../api/api_client.ts";
import type { ApplianceStatus, SnapshotEntry } from "../api/wire_types.ts";
import { UsageError } from "../errors.ts";
import { formatBytes } from "../progress.ts";
import { stateDir } from "../state_dir.ts";
import { parseFlags, printJson } from "./args.ts";
import type { Command } from "./command.ts";

const COMMON = { state: { type: "string" as const }, json: { type: "boolean" as const } };

function backupLine(a: ApplianceStatus): string {
  const b = a.backup;
  if (!b.enabled) return `${a.name.padEnd(16)} not backed up (no data repository)`;
  if (!a.subscribed) return `${a.name.padEnd(16)} no user disk yet`;
  const parts = [
    b.pendingBytes > 0 ? `${formatBytes(b.pendingBytes)} to upload` : "all uploaded",
    b.pendingSnapshots ? `${b.pendingSnapshots} snapshot(s) queued` : "",
    b.uploading ? `uploading at ${formatBytes(b.rateBytesPerSecond)}/s` : "",
    b.lastVersion !== null ? `newest version ${b.lastVersion}` : "no version yet",
    b.lastBackupAt ? `taken ${b.lastBackupAt}` : "",
    b.error ? `error: ${b.error}` : "",
    b.forkNote ?? "",
  ].filter(Boolean);
  return `${a.name.padEnd(16)} ${b.series}: ${parts.join("; ")}`;
}

export const backupStatusCommand: Command = {
  name: "backup status",
  summary: "how much of each user disk is still to be uploaded",
  usage: `vat backup status [--state DIR] [--json]

Per appliance: the bytes still to upload to the data repository (0 means another PC
can take over), queued snapshots, the upload rate, the newest backed-up version.`,
  async run(args) {
    const { values } = parseFlags("backup status", args, COMMON);
    const client = await connectDaemon(stateDir(values.state));
    const list = await expectOk<ApplianceStatus[]>(client.api.appliances.$get());
    if (values.json) {
      printJson(list.map((a) => ({ name: a.name, subscribed: a.subscribed, ...a.backup })));
    } else if (list.length === 0) console.log("no appliances");
    else for (const a of list) console.log(backupLine(a));
    return 0;
  },
};

export const backupNowCommand: Command = {
  name: "backup now",
  summary: "snapshot an appliance's user disk now and upload it",
  usage: `vat backup now NAME [--wait] [--state DIR] [--json]

Takes a snapshot of the user disk now (of a running appliance, while it runs) and
starts uploading; --wait waits until nothing is left to upload, showing progress.`,
  async run(args) {
    const { values, positionals } = parseFlags("backup now", args, {
      ...COMMON,
      wait: { type: "boolean" },
    });
    if (positionals.length !== 1) throw new UsageError("backup now: give one appliance NAME");
    const client = await connectDaemon(stateDir(values.state));
    const param = { param: { name: positionals[0] } };
    let status = await expectOk<ApplianceStatus>(
      client.api.appliances[":name"].backup.$post(param),
    );
    const tty = Deno.stderr.isTerminal();
    while (values.wait && (status.backup.pendingBytes > 0 || status.backup.uploading)) {
      if (status.backup.error && !status.backup.uploading) {
        throw new UsageError(`backup of ${status.name} is stuck: ${status.backup.error}`);
      }
      if (!values.json) {
        const line = `${formatBytes(status.backup.pendingBytes)} to upload` +
          (status.backup.rateBytesPerSecond
            ? ` at ${formatBytes(status.backup.rateBytesPerSecond)}/s`
            : "");
        Deno.stderr.writeSync(new TextEncoder().encode(tty ? `\r\x1b[K${line}` : `${line}\n`));
      }
      await new Promise((r) => setTimeout(r, 500));
      status = await expectOk<ApplianceStatus>(client.api.appliances[":name"].$get(param));
    }
    if (values.json) printJson(status.backup);
    else {
      if (tty && values.wait) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
      console.log(backupLine(status));
    }
    return 0;
  },
};

export const snapshotsCommand: Command = {
  name: "snapshots",
  summary: "list the backed-up versions of an appliance's user disk",
  usage: `vat snapshots NAME [--state DIR] [--json]

The versions of the user disk in the data repository, newest first (with the snapshots
still waiting for upload): when each was taken, why, its size and changed bytes.`,
  async run(args) {
    const { values, positionals } = parseFlags("snapshots", args, COMMON);
    if (positionals.length !== 1) throw new UsageError("snapshots: give one appliance NAME");
    const client = await connectDaemon(stateDir(values.state));
    const list = await expectOk<SnapshotEntry[]>(
      client.api.appliances[":name"].snapshots.$get({ param: { name: positionals[0] } }),
    );
    if (values.json) {
      printJson(list);
      return 0;
    }
    if (list.length === 0) console.log("no snapshots yet");
    for (const s of list) {
      const what = s.undoneTo !== null ? `undo to version ${s.undoneTo}` : s.reason;
      console.log(
        `${(s.version === null ? "queued" : `v${s.version}`).padEnd(8)} ${s.takenAt}  ` +
          `${formatBytes(s.dataBytes).padStart(10)}  ${
            formatBytes(s.changedBytes).padStart(10)
          } changed  ${what}`,
      );
    }
    return 0;
  },
};

export const undoCommand: Command = {
  name: "undo",
  summary: "make a stopped appliance's user disk equal to an earlier version",
  usage: `vat undo NAME --to VERSION [--state DIR] [--json]

Commits version VERSION's user disk again as the newest version (see vat snapshots
NAME). Nothing is deleted: what the disk held is backed up first, and every version
stays listed, so an undo can itself be undone. The appliance must be stopped.`,
  async run(args) {
    const { values, positionals } = parseFlags("undo", args, { ...COMMON, to: { type: "string" } });
    if (positionals.length !== 1) throw new UsageError("undo: give one appliance NAME");
    const version = Number(values.to);
    if (!values.to || !Number.isSafeInteger(version) || version < 1) {
      throw new UsageError("undo: give the version to go back to with --to N (see vat snapshots)");
    }
    const client = await connectDaemon(stateDir(values.state));
    const status = await expectOk<ApplianceStatus>(
      client.api.appliances[":name"].undo.$post({
        param: { name: positionals[0] },
        json: { version },
      }),
    );
    const line = backupLine(status).trim();
    if (values.json) printJson(status);
    else console.log(`${positionals[0]}: the user disk is version ${version} again; ${line}`);
    return 0;
  },
};
