/**
 * The vat daemon under test, run as its own process (`deno run -A main.ts --headless`)
 * and driven through its API with vat's own typed client, so a measured start is the
 * daemon's work and not a CLI process's start-up.
 *
 * A start is timed from the API request to the guest's ready line in the console log,
 * with two moments in between read from the files vat writes (paths as
 * vat/appliance/appliances.ts and appliance_run.ts lay them out): the version's kernel
 * and initrd exported to `appliances/NAME/boot/`, and QEMU's pid file in `run/NAME/`.
 *
 * @module
 */

import { type ApiClient, connectDaemon, expectOk } from "../../vat/api/api_client.ts";
import type { ApplianceStatus } from "../../vat/appliance/appliances.ts";
import { type ServerProcess, startServer } from "../nbd/processes.ts";
import { fileSize, waitForSerialLine } from "./serial_log.ts";
import { pathExists } from "../../vat/fs_atomic.ts";

/** setpriv (util-linux) sets a parent-death signal and execs the command in its place. */
const _SETPRIV = "/usr/bin/setpriv";

/**
 * Starts `deno run -A main args...` as a server (see bench/nbd/processes.ts), ready
 * once its output matches `ready`. Where setpriv exists the process gets SIGTERM if
 * this one dies, so even a benchmark killed with SIGKILL leaves no vat behind (a
 * daemon then stops its appliances; its QEMUs die with it).
 */
export async function startVat(
  name: string,
  main: string,
  args: string[],
  ready: RegExp,
): Promise<ServerProcess> {
  const command = [Deno.execPath(), "run", "-A", main, ...args];
  const withSetpriv = await pathExists(_SETPRIV);
  return await startServer(
    name,
    withSetpriv ? _SETPRIV : command[0],
    withSetpriv ? ["--pdeathsig", "TERM", "--", ...command] : command.slice(1),
    { line: ready },
  );
}

/** Moments of one start, in milliseconds from the start request. */
export interface VatBootTimes {
  /** Kernel and initrd were exported; undefined when they already were before the start. */
  bootFilesMs?: number;
  /** QEMU wrote its pid file. */
  qemuStartedMs: number;
  /** The guest printed the ready line. */
  readyMs: number;
}

/** The moments `start()` reports to its `onMoment` callback as they happen. */
export type VatBootMoment = "bootFiles" | "qemuStarted" | "ready";

/** A running vat daemon with its own state directory. */
export class VatDaemon {
  readonly stateDir: string;
  /** Milliseconds from spawning the daemon until it listened. */
  readonly startupMs: number;
  readonly #server: ServerProcess;
  readonly #api: ApiClient;

  private constructor(stateDir: string, server: ServerProcess, api: ApiClient) {
    this.stateDir = stateDir;
    this.startupMs = server.startupMs;
    this.#server = server;
    this.#api = api;
  }

  /** Starts `deno run -A main --headless --state stateDir --port 0 args...`. */
  static async start(main: string, stateDir: string, args: string[] = []): Promise<VatDaemon> {
    const server = await startVat(
      "vat daemon",
      main,
      ["--headless", "--state", stateDir, "--port", "0", ...args],
      /listening at http/,
    );
    try {
      return new VatDaemon(stateDir, server, await connectDaemon(stateDir));
    } catch (err) {
      await server.stop();
      throw err;
    }
  }

  /** Adds the appliance in `repo` as `name`. */
  async add(repo: string, name: string): Promise<void> {
    await expectOk<ApplianceStatus>(this.#api.api.appliances.$post({ json: { repo, name } }));
  }

  /** Appliance `name`'s status. */
  async status(name: string): Promise<ApplianceStatus> {
    return await expectOk<ApplianceStatus>(
      this.#api.api.appliances[":name"].$get({ param: { name } }),
    );
  }

  /**
   * Starts appliance `name` (whose newest version is `version`) and resolves once its
   * guest printed `marker` on the console.
   */
  async start(
    name: string,
    version: number,
    marker: string,
    timeoutMs: number,
    onMoment: (moment: VatBootMoment) => void = () => {},
  ): Promise<VatBootTimes> {
    const consoleLog = `${this.stateDir}/run/${name}/console.log`;
    const pidFile = `${this.stateDir}/run/${name}/qemu.pid`;
    const bootDir = `${this.stateDir}/appliances/${name}/boot`;
    const bootFiles = [`${bootDir}/${version}-kernel`, `${bootDir}/${version}-initrd`];
    const fromByte = await fileSize(consoleLog);
    const hadBootFiles = await _allExist(bootFiles);
    let startError: string | undefined;
    let bootFilesAt: number | undefined;
    let qemuStartedAt: number | undefined;

    const started = performance.now();
    const request = expectOk<ApplianceStatus>(
      this.#api.api.appliances[":name"].start.$post({ param: { name }, json: {} }),
    ).catch((err) => {
      startError = `(the start failed: ${err.message})`;
    });
    const readyAt = await waitForSerialLine(consoleLog, marker, {
      fromByte,
      timeoutMs,
      failed: () => startError,
      onPoll: async () => {
        if (!hadBootFiles && bootFilesAt === undefined && await _allExist(bootFiles)) {
          bootFilesAt = performance.now();
          onMoment("bootFiles");
        }
        if (qemuStartedAt === undefined && await pathExists(pidFile)) {
          qemuStartedAt = performance.now();
          onMoment("qemuStarted");
        }
      },
    });
    onMoment("ready");
    await request;
    if (startError !== undefined) throw new Error(startError);
    return {
      bootFilesMs: bootFilesAt === undefined ? undefined : bootFilesAt - started,
      qemuStartedMs: (qemuStartedAt ?? readyAt) - started,
      readyMs: readyAt - started,
    };
  }

  /** Stops appliance `name` (ACPI power button; the guest powers off). */
  async stopAppliance(name: string): Promise<void> {
    await expectOk<ApplianceStatus>(
      this.#api.api.appliances[":name"].stop.$post({ param: { name } }),
    );
  }

  /** Stops the daemon (SIGTERM: it stops its appliances first). */
  async stop(): Promise<void> {
    await this.#server.stop(20_000);
  }
}

async function _allExist(paths: string[]): Promise<boolean> {
  for (const path of paths) if (!await pathExists(path)) return false;
  return true;
}
