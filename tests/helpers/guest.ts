/**
 * Driving a running busybox appliance through the daemon's CLI, for the end-to-end
 * tests: publishing it, reading its serial console, asking it commands, and finding
 * QEMU processes left behind.
 *
 * @module
 */

import type { BusyboxAppliance } from "../../vat/demo/busybox_appliance.ts";
import { vatOk } from "./vat_cli.ts";

const BOOT_TIMEOUT_MS = 90_000;

/** Publishes the busybox appliance `a` to `repo` with `key` (256 MiB of memory). */
export function publishAppliance(
  repo: string,
  key: string,
  a: BusyboxAppliance,
  ...extra: string[]
) {
  return vatOk([
    "publish",
    repo,
    "--key",
    key,
    "--image",
    a.systemImage,
    "--user-disk",
    a.userImage,
    "--kernel",
    a.kernel,
    "--initrd",
    a.initrd,
    "--append",
    a.append,
    "--memory",
    "256",
    ...extra,
  ]);
}

/**
 * A new appliance repository at `DIR/apps` holding `a` as version 1, published with a
 * new key `DIR/key`; returns the repository's path.
 */
export async function applianceRepo(
  dir: string,
  a: BusyboxAppliance,
  ...extra: string[]
): Promise<string> {
  const repo = `${dir}/apps`;
  await vatOk(["keygen", "--out", `${dir}/key`]);
  await vatOk(["repo", "init", repo, "--kind", "appliance"]);
  await publishAppliance(repo, `${dir}/key`, a, ...extra);
  return repo;
}

/** The guest of appliance `name` on the daemon of `state`, through its serial console. */
export class Guest {
  constructor(readonly state: string, readonly name: string) {}

  async log(): Promise<string> {
    return (await vatOk(["console", this.name, "--state", this.state])).stdout;
  }

  /** Waits until the console log has `count` lines matching `pattern`. */
  async waitFor(pattern: RegExp, count = 1, timeoutMs = BOOT_TIMEOUT_MS): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const log = await this.log();
      const all = log.match(new RegExp(pattern.source, "g")) ?? [];
      if (all.length >= count) return all[count - 1];
      if (Date.now() > deadline) {
        throw new Error(`no ${pattern} (#${count}) on the console; it ends:\n${log.slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Types a command and returns its reply line (`VAT-REPLY ...` or `VAT-ERROR ...`). */
  async ask(command: string): Promise<string> {
    const word = command.split(" ")[0];
    const pattern = new RegExp(`VAT-(?:REPLY|ERROR) ${word}[^\\r\\n]*`);
    const before = ((await this.log()).match(new RegExp(pattern.source, "g")) ?? []).length;
    await vatOk(["console", this.name, "--send", command, "--state", this.state]);
    return await this.waitFor(pattern, before + 1, 30_000);
  }
}

/** The command lines of QEMU processes whose arguments mention `dir` ("" when none). */
export function qemuProcessesUnder(dir: string): Promise<string> {
  return new Deno.Command("pgrep", { args: ["-af", `qemu-system.*${dir}`], stdout: "piped" })
    .output().then((o) => new TextDecoder().decode(o.stdout).trim());
}
