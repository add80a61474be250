/**
 * The user's verbs, sent to the running daemon: add, list, start, stop, suspend,
 * reset, delete, status, console, hoard, and publish --from.
 *
 * @module
 */

import { connectDaemon, expectOk } from "../api/api_client.ts";
import { UsageError } from "../errors.ts";
import { readPublicKeyId } from "../auth/signing_key.ts";
import { formatBytes, type OperationProgress, terminalProgress } from "../progress.ts";
import type { PublishResult } from "../repo/publish.ts";
import { stateDir } from "../state_dir.ts";
import type { AccelDecision, ApplianceStatus } from "../api/wire_types.ts";
import { parseFlags, printJson } from "./args.ts";
import type { Command } from "./command.ts";

const COMMON = { state: { type: "string" as const }, json: { type: "boolean" as const } };

function describe(a: ApplianceStatus): string {
  const version = a.runningVersion ?? a.suspendedVersion ?? a.latestVersion;
  const notes = [
    a.updateAvailable ? `update available (version ${a.latestVersion})` : "",
    a.updateRequired ? "update required" : "",
    a.offline ? "offline" : "",
    a.safeOffline
      ? "safe offline"
      : a.hoarding && a.totalBytes !== null
      ? `hoarding ${formatBytes(a.cachedBytes ?? 0)} of ${formatBytes(a.totalBytes)}`
      : a.hoarded
      ? "hoarded, not all cached"
      : "",
    ...a.operations.filter((op) => op.kind !== "hoard").map(describeOperation),
    a.latestVersion === null && !a.offline ? "no version found" : "",
    a.backup.enabled && a.subscribed
      ? a.backup.pendingBytes > 0
        ? `backup: ${formatBytes(a.backup.pendingBytes)} to upload` +
          (a.backup.rateBytesPerSecond ? ` at ${formatBytes(a.backup.rateBytesPerSecond)}/s` : "")
        : `backed up${a.backup.lastVersion !== null ? ` (v${a.backup.lastVersion})` : ""}`
      : "",
    a.backup.error ? `backup error: ${a.backup.error}` : "",
    a.backup.forkNote ?? "",
    a.lastError ? `error: ${a.lastError}` : "",
    a.trust?.problem ? `trust problem: ${a.trust.problem}` : "",
  ].filter(Boolean);
  return `${a.name.padEnd(16)} ${a.state.padEnd(10)} ${version === null ? "-" : `v${version}`}` +
    (notes.length ? `  ${notes.join("; ")}` : "");
}

/** "prefetch 12.0 MiB of 40.0 MiB, 180.0 KiB/s, 2 min 40 s left". */
export function describeOperation(op: OperationProgress): string {
  const rate = op.rateBytesPerSecond > 0 ? `, ${formatBytes(op.rateBytesPerSecond)}/s` : "";
  let left = "";
  if (op.secondsLeft !== null && op.doneBytes < op.totalBytes) {
    const m = Math.floor(op.secondsLeft / 60);
    left = `, ${m > 0 ? `${m} min ` : ""}${op.secondsLeft % 60} s left`;
  }
  return `${op.kind} ${formatBytes(op.doneBytes)} of ${formatBytes(op.totalBytes)}${rate}${left}`;
}

/** A verb that names one appliance and posts to `/appliances/NAME/ACTION`. */
function actionCommand(
  action: "start" | "stop" | "suspend" | "reset",
  summary: string,
  usage: string,
): Command {
  return {
    name: action,
    summary,
    usage,
    async run(args) {
      const { values, positionals } = parseFlags(action, args, {
        ...COMMON,
        ...(action === "start"
          ? { "take-over": { type: "boolean" as const }, fork: { type: "boolean" as const } }
          : {}),
      });
      if (positionals.length !== 1) throw new UsageError(`${action}: give one appliance NAME`);
      const flags = values as { "take-over"?: boolean; fork?: boolean };
      if (flags["take-over"] && flags.fork) {
        throw new UsageError("start: choose --take-over or --fork, not both");
      }
      const client = await connectDaemon(stateDir(values.state));
      const param = { param: { name: positionals[0] } };
      const status = await expectOk<ApplianceStatus>(
        action === "start"
          ? client.api.appliances[":name"].start.$post({
            ...param,
            json: { takeOver: flags["take-over"], fork: flags.fork },
          })
          : client.api.appliances[":name"][action].$post(param),
      );
      if (values.json) printJson(status);
      else console.log(describe(status));
      return 0;
    },
  };
}

export const applianceAddCommand: Command = {
  name: "appliance add",
  summary: "add an appliance from its repository, pinning its publisher keys",
  usage: `vat appliance add REPO [--name NAME] [--publisher KEY.pub ...] [--state DIR] [--json]

Pins the repository's id and publisher keys (printed with their fingerprints: compare
them with the publisher's). From then on this VAT accepts only versions signed by a
pinned key; key changes reach it only as key lists signed by a pinned key (vat repo
add-key). Without --publisher the repository's own keys are pinned (trust on first
use); with it, only the keys given (KEY.pub files or "ed25519:..." ids).`,
  async run(args) {
    const { values, positionals } = parseFlags("appliance add", args, {
      ...COMMON,
      name: { type: "string" },
      publisher: { type: "string", multiple: true },
    });
    if (positionals.length !== 1) throw new UsageError("appliance add: give one REPO");
    const publishers = await Promise.all((values.publisher ?? []).map(readPublicKeyId));
    const client = await connectDaemon(stateDir(values.state));
    const repo = /^[a-z0-9]+:\/\//.test(positionals[0]) || positionals[0].startsWith("/")
      ? positionals[0]
      : `${Deno.cwd()}/${positionals[0]}`;
    const status = await expectOk<ApplianceStatus>(
      client.api.appliances.$post({ json: { repo, name: values.name, publishers } }),
    );
    if (values.json) printJson(status);
    else {
      console.log(`added ${describe(status)}`);
      const trust = status.trust;
      if (trust) {
        console.log(
          `pinned repository ${trust.repoId} and its publisher keys` +
            (trust.pinnedBy === "first use"
              ? " on first use (compare the fingerprints with the publisher's):"
              : ", as given:"),
        );
        for (const k of trust.keys) console.log(`  ${k.id}  ${k.fingerprint}`);
      }
    }
    return 0;
  },
};

export const lsCommand: Command = {
  name: "ls",
  summary: "list the appliances on this VAT",
  usage: `vat ls [--state DIR] [--json]`,
  async run(args) {
    const { values } = parseFlags("ls", args, COMMON);
    const client = await connectDaemon(stateDir(values.state));
    const list = await expectOk<ApplianceStatus[]>(client.api.appliances.$get());
    if (values.json) printJson(list);
    else if (list.length === 0) {
      console.log("no appliances yet (add one with: vat appliance add REPO)");
    } else for (const a of list) console.log(describe(a));
    return 0;
  },
};

export const startCommand = actionCommand(
  "start",
  "boot an appliance's newest version (or resume it)",
  `vat start NAME [--take-over | --fork] [--state DIR] [--json]

When the VAT backs up to a data repository and another VAT holds this subscription,
start refuses and says which; --take-over takes it (the other VAT keeps its unsent
changes as a fork), --fork continues here in a new subscription.`,
);
export const stopCommand = actionCommand(
  "stop",
  "shut an appliance down (ACPI, then a hard stop)",
  `vat stop NAME [--state DIR] [--json]`,
);
export const suspendCommand = actionCommand(
  "suspend",
  "save an appliance's memory locally and stop it",
  `vat suspend NAME [--state DIR] [--json]`,
);
export const resetCommand = actionCommand(
  "reset",
  "throw away an appliance's ephemeral disk and memory image (the user disk stays)",
  `vat reset NAME [--state DIR] [--json]`,
);

export const hoardCommand: Command = {
  name: "hoard",
  summary: "keep an appliance's newest version cached for offline use (or stop: --off)",
  usage: `vat hoard NAME [--off] [--state DIR] [--json]

Fetches every chunk of the appliance's newest version that the cache lacks (system disk,
kernel, initrd and the user disk's base) and pins them, so the appliance starts without a
network. Newer versions are fetched and pinned when they are seen; the older version stays
pinned until then. --off drops the pins (the chunks stay cached until evicted).`,
  async run(args) {
    const { values, positionals } = parseFlags("hoard", args, {
      ...COMMON,
      off: { type: "boolean" },
    });
    if (positionals.length !== 1) throw new UsageError("hoard: give one appliance NAME");
    const name = positionals[0];
    const client = await connectDaemon(stateDir(values.state));
    const request = expectOk<ApplianceStatus>(
      client.api.appliances[":name"].hoard.$post({ param: { name }, json: { on: !values.off } }),
    );
    // The daemon fetches; this shows how far it got until the answer comes.
    const progress = terminalProgress({ quiet: values.json || values.off });
    const started = Date.now();
    let answered = false;
    const watching = (async () => {
      while (!answered) {
        await new Promise((r) => setTimeout(r, 300));
        if (answered) break;
        const res = await client.api.appliances[":name"].$get({ param: { name } }).catch(() =>
          null
        );
        const a = res?.ok ? await res.json() as ApplianceStatus : null;
        if (answered || !a?.hoarding || a.totalBytes === null) continue;
        progress.listener({
          phase: `hoarding ${name}`,
          doneBytes: a.cachedBytes ?? 0,
          totalBytes: a.totalBytes,
          transferredBytes: 0,
          elapsedMs: Date.now() - started,
        });
      }
    })();
    let status: ApplianceStatus;
    try {
      status = await request;
    } finally {
      answered = true;
      await watching;
      progress.done();
    }
    if (values.json) printJson(status);
    else console.log(describe(status));
    return 0;
  },
};

export const deleteCommand: Command = {
  name: "delete",
  summary: "delete an appliance and its user disk",
  usage: `vat delete NAME --yes [--discard-unsent] [--state DIR]

Deletes the subscription and its user disk: what the user kept on it is lost, but for
the versions already backed up to the data repository (they stay there). Refused while
changes wait to be backed up (vat backup now NAME --wait sends them), unless
--discard-unsent.`,
  async run(args) {
    const { values, positionals } = parseFlags("delete", args, {
      ...COMMON,
      yes: { type: "boolean" },
      "discard-unsent": { type: "boolean" },
    });
    if (positionals.length !== 1) throw new UsageError("delete: give one appliance NAME");
    const name = positionals[0];
    if (!values.yes) {
      throw new UsageError(
        `delete: this destroys "${name}" and its user disk; run again with --yes to confirm`,
      );
    }
    const client = await connectDaemon(stateDir(values.state));
    await expectOk(
      client.api.appliances[":name"].$delete({
        param: { name },
        query: { confirm: name, discardUnsent: values["discard-unsent"] ? "1" : "0" },
      }),
    );
    console.log(`deleted ${name}`);
    return 0;
  },
};

export const statusCommand: Command = {
  name: "status",
  summary: "the daemon, its appliances and its cache",
  usage: `vat status [--state DIR] [--json]`,
  async run(args) {
    const { values } = parseFlags("status", args, COMMON);
    const client = await connectDaemon(stateDir(values.state));
    const status = await expectOk<{
      version: string;
      stateDir: string;
      pid: number;
      appliances: ApplianceStatus[];
      cache: {
        usedBytes: number;
        budgetBytes: number;
        hits: number;
        misses: number;
        diskFull: boolean;
      };
      remoteDisplay: { url: string; fingerprint: string } | null;
      accel: AccelDecision | null;
    }>(client.api.status.$get());
    if (values.json) {
      printJson(status);
      return 0;
    }
    console.log(`vat ${status.version}, daemon pid ${status.pid}, state ${status.stateDir}`);
    console.log(
      `cache: ${formatBytes(status.cache.usedBytes)} of ${
        formatBytes(status.cache.budgetBytes)
      }, ` +
        `${status.cache.hits} hits, ${status.cache.misses} misses` +
        (status.cache.diskFull ? "; its disk is full: chunks are served but not cached" : ""),
    );
    if (status.accel) {
      console.log(
        `guests run on ${status.accel.accel === "kvm" ? "KVM" : "TCG"}: ${status.accel.reason}`,
      );
    }
    if (status.remoteDisplay) {
      console.log(
        `remote display: ${status.remoteDisplay.url} (TLS certificate SHA-256 ${status.remoteDisplay.fingerprint})`,
      );
    }
    for (const a of status.appliances) console.log(describe(a));
    return 0;
  },
};

export const consoleCommand: Command = {
  name: "console",
  summary: "print an appliance's serial console log, or type a line into it",
  usage: `vat console NAME [--send LINE] [--state DIR]

Prints the serial console's log; with --send, types LINE (and Enter) into the running
appliance's serial console instead.`,
  async run(args) {
    const { values, positionals } = parseFlags("console", args, {
      ...COMMON,
      send: { type: "string" },
    });
    if (positionals.length !== 1) throw new UsageError("console: give one appliance NAME");
    const client = await connectDaemon(stateDir(values.state));
    if (values.send !== undefined) {
      await expectOk(
        client.api.appliances[":name"].console.$post({
          param: { name: positionals[0] },
          json: { line: values.send },
        }),
      );
      return 0;
    }
    const res = await client.api.appliances[":name"].console.$get({
      param: { name: positionals[0] },
    });
    if (!res.ok) await expectOk(res);
    await Deno.stdout.write(new TextEncoder().encode(await res.text()));
    return 0;
  },
};

/** `vat publish --from NAME --key KEY`: the running appliance's system disk. */
export async function publishFromDaemon(
  name: string,
  key: string,
  state: string | undefined,
  json: boolean,
): Promise<number> {
  const client = await connectDaemon(stateDir(state));
  const keyPath = key.startsWith("/") ? key : `${Deno.cwd()}/${key}`;
  const result = await expectOk<PublishResult>(
    client.api.appliances[":name"].publish.$post({ param: { name }, json: { key: keyPath } }),
  );
  if (json) printJson(result);
  else {
    console.log(
      `published version ${result.version} from the running ${name}: ${result.newChunks} new chunks ` +
        `(${formatBytes(result.newStoredBytes)} uploaded)`,
    );
  }
  return 0;
}
