/**
 * `vat update check|apply|status`: the updater (docs/UPDATE.md), through the running
 * daemon's API; with no daemon running for the state directory, in this process (for
 * test rigs and first installs), with the settings of `config.json` or the flags.
 *
 * @module
 */

import { connectDaemon, expectOk } from "../api/api_client.ts";
import { ChunkCache } from "../cache/chunk_cache.ts";
import { readDaemonInfo } from "../api/daemon_info.ts";
import { readDaemonConfig } from "../daemon/daemon_config.ts";
import { UsageError } from "../errors.ts";
import { formatBytes, terminalProgress } from "../progress.ts";
import { DEFAULT_CACHE_BYTES, stateDir } from "../state_dir.ts";
import { InstallDir, type InstallState } from "../update/install_dir.ts";
import { resolveUpdateSettings } from "../update/update_settings.ts";
import {
  type ApplyResult,
  type AvailableRelease,
  type UpdateProgress,
  Updater,
  type UpdateStatus,
} from "../update/updater.ts";
import { parseFlags, printJson } from "./args.ts";
import type { Command } from "./command.ts";
import { VERSION } from "./version.ts";

const FLAGS = {
  state: { type: "string" as const },
  json: { type: "boolean" as const },
  "release-repo": { type: "string" as const },
  "release-key": { type: "string" as const },
  "install-dir": { type: "string" as const },
};

const USAGE_TAIL = `
Goes through the daemon running for the state directory (--state DIR, $VAT_STATE); with
none running, works in this process with the release repository of DIR/config.json
("releaseRepo", "releaseKey", "installDir") or of --release-repo REPO --release-key
KEY.pub [--install-dir DIR] (default DIR/install).`;

type Verb = "check" | "apply" | "status";

function updateCommand(verb: Verb, summary: string, usage: string): Command {
  return {
    name: `update ${verb}`,
    summary,
    usage: usage + USAGE_TAIL,
    async run(args) {
      const { values, positionals } = parseFlags(`update ${verb}`, args, FLAGS);
      if (positionals.length > 0) {
        throw new UsageError(`update ${verb}: unexpected "${positionals.join(" ")}"`);
      }
      const dir = stateDir(values.state);
      const flags = {
        releaseRepo: values["release-repo"],
        releaseKey: values["release-key"],
        installDir: values["install-dir"],
      };
      let answer: unknown;
      if (await readDaemonInfo(dir)) {
        if (flags.releaseRepo || flags.releaseKey || flags.installDir) {
          throw new UsageError(
            `update ${verb}: a daemon runs for ${dir} and uses its own release settings; ` +
              "leave out --release-repo, --release-key and --install-dir",
          );
        }
        const client = await connectDaemon(dir);
        const request = expectOk(
          verb === "status"
            ? client.api.update.$get()
            : verb === "check"
            ? client.api.update.check.$post()
            : client.api.update.apply.$post(),
        );
        answer = verb === "apply"
          ? await _showProgress(
            request,
            () => expectOk<UpdateStatus>(client.api.update.$get()),
            values.json,
          )
          : await request;
      } else {
        answer = await _inProcess(verb, dir, flags, values.json);
      }
      if (values.json) {
        printJson(answer);
        return 0;
      }
      if (verb === "check") console.log(describeAvailable(answer as AvailableRelease));
      else if (verb === "apply") console.log(describeApply(answer as ApplyResult));
      else console.log(describeStatus(answer as UpdateStatus | InstallState));
      return 0;
    },
  };
}

async function _inProcess(
  verb: Verb,
  dir: string,
  flags: { releaseRepo?: string; releaseKey?: string; installDir?: string },
  quiet?: boolean,
): Promise<unknown> {
  const config = await readDaemonConfig(dir);
  const settings = await resolveUpdateSettings(dir, config, flags);
  const installDir = new InstallDir(settings.installDir);
  if (!settings.repo || !settings.key) {
    if (verb === "status") return await installDir.read();
    throw new UsageError(
      `no release repository: give --release-repo REPO --release-key KEY.pub ` +
        `or set "releaseRepo" and "releaseKey" in ${dir}/config.json`,
    );
  }
  const cache = await ChunkCache.open({
    dir: `${dir}/cache`,
    budgetBytes: config.cacheBytes ?? DEFAULT_CACHE_BYTES,
  });
  try {
    const updater = new Updater({
      repo: settings.repo,
      key: settings.key,
      installDir,
      cache,
      runningVersion: VERSION,
      runningSlot: settings.runningSlot,
      log: (line) => console.error(line),
    });
    if (verb === "check") return await updater.check();
    if (verb === "apply") {
      return await _showProgress(updater.apply(), () => updater.status(), quiet);
    }
    return await updater.status();
  } finally {
    await cache.close();
  }
}

/** Prints the download's progress (read every half second) until `work` ends. */
async function _showProgress<T>(
  work: Promise<T>,
  read: () => Promise<UpdateStatus>,
  quiet?: boolean,
): Promise<T> {
  const progress = terminalProgress({ quiet });
  const started = performance.now();
  let done = false;
  const polling = (async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, 500));
      if (done) break;
      const p = (await read().catch(() => null))?.progress;
      if (!p || p.phase === "staged") continue;
      const fetching = p.phase === "fetching";
      progress.listener({
        phase: fetching
          ? `fetching release ${p.release}`
          : `writing release ${p.release} into slot ${p.slot}`,
        doneBytes: fetching ? p.fetchedBytes : p.doneBytes,
        totalBytes: fetching ? p.toFetchBytes : p.totalBytes,
        transferredBytes: p.fetchedStoredBytes + p.indexBytes,
        elapsedMs: performance.now() - started,
      });
    }
  })();
  try {
    return await work;
  } finally {
    done = true;
    await polling;
    progress.done();
  }
}

/** One line about the newest release. */
export function describeAvailable(a: AvailableRelease): string {
  const what = `release ${a.release} (vat ${a.vatVersion}, ${formatBytes(a.sizeBytes)})`;
  const line = a.installable
    ? `${what} is available: ${a.reason} (install it with: vat update apply)`
    : `${what}: ${a.reason}`;
  return a.freshness ? `${line}\nwarning: ${a.freshness}` : line;
}

/** What an apply did, with the bytes it fetched against the whole release. */
export function describeApply(r: ApplyResult): string {
  if (!r.installed || !r.progress) return r.reason;
  return `${r.reason}; ${describeProgress(r.progress)}`;
}

/** "fetched 5.7 KiB of chunks (48.0 KiB plain) and 6.8 KiB of indexes for a 94.5 MiB release; ...". */
export function describeProgress(p: UpdateProgress): string {
  return `fetched ${formatBytes(p.fetchedStoredBytes)} of chunks (${
    formatBytes(p.fetchedBytes)
  } plain) and ${formatBytes(p.indexBytes)} of indexes for a ${formatBytes(p.totalBytes)} ` +
    `release; ${formatBytes(p.localBytes)} from the installed slots, ` +
    `${formatBytes(p.cachedBytes)} already cached`;
}

/** The slots and the updater's state. */
export function describeStatus(s: UpdateStatus | InstallState): string {
  const install = "install" in s ? s.install : s;
  const slot = (x: { slot: string; release: { release: number; vatVersion: string } | null }) =>
    `slot ${x.slot}` +
    (x.release ? ` (release ${x.release.release}, vat ${x.release.vatVersion})` : "");
  const lines = [
    `install directory ${install.dir}: current ${
      install.current ? slot(install.current) : "none"
    }` +
    (install.next
      ? `; next ${slot(install.next)}, ${install.next.attemptsLeft} boot attempts left`
      : "") +
    (install.failed !== null ? `; release ${install.failed} failed to start` : ""),
  ];
  if ("install" in s) {
    lines.unshift(
      `vat ${s.runningVersion}` + (s.runningSlot ? ` from slot ${s.runningSlot}` : "") +
        `; releases from ${s.repo} signed by ${s.key}`,
    );
    if (s.state === "downloading" && s.progress) {
      const p = s.progress;
      lines.push(
        `downloading release ${p.release} into slot ${p.slot} (${p.phase}): ` +
          `${formatBytes(p.fetchedBytes)} of ${formatBytes(p.toFetchBytes)} to fetch, ` +
          `${formatBytes(p.doneBytes)} of ${formatBytes(p.totalBytes)} written`,
      );
    }
    if (s.available) lines.push(describeAvailable(s.available));
    if (s.lastApply?.installed && s.lastApply.progress) {
      lines.push(`last update: ${describeApply(s.lastApply)}`);
    }
    if (s.lastError) lines.push(`error: ${s.lastError}`);
  }
  return lines.join("\n");
}

export const updateCheckCommand = updateCommand(
  "check",
  "see whether vat's release repository has a newer release",
  "vat update check [--state DIR] [--json]",
);
export const updateApplyCommand = updateCommand(
  "apply",
  "download, verify and stage the newest release of vat",
  `vat update apply [--state DIR] [--json]

Fetches the newest release (only the chunks this VAT lacks), verifies it, writes it into
the free slot of the install directory and stages it: the launcher (INSTALL/vat-launcher.sh)
starts it next, and the daemon restarts into it as soon as no appliance runs.`,
);
export const updateStatusCommand = updateCommand(
  "status",
  "the running release, the slots and the updater's progress",
  "vat update status [--state DIR] [--json]",
);
