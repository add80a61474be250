/**
 * `VirtualMachine`: one running QEMU, supervised by the VAT. It carries out the
 * paper's operations on a running appliance: start (boot, or resume from a memory
 * image), stop (ACPI power button, then quit, then SIGKILL), suspend (to a memory
 * image), pause/resume, and reports how QEMU ended.
 *
 * QEMU is controlled over QMP; the guest's serial console is `vm.console`; the
 * display is VNC on a Unix socket in the run directory (mode 0700), and nowhere else.
 * See `qemu_args.ts` for the command line and the reasons for it.
 *
 * No QEMU outlives its `VirtualMachine`: every failure path kills it, a QEMU whose
 * VAT dies gets SIGKILL from the kernel (`spawnQemu()`), and `start()` first ends any
 * QEMU that a pid file in the run directory names (`reapOrphan()`). Sockets and the
 * pid file are removed once QEMU has exited; the console log stays.
 *
 * @module
 */

import { NotFoundError, UsageError } from "../errors.ts";
import { sharedAcceleratorChoice } from "./accelerator.ts";
import { type Accelerator, qemuArgs } from "./qemu_args.ts";
import {
  isMissingBinary,
  QEMU_BINARY,
  QemuError,
  qemuNotInstalled,
  type QemuProcess,
  spawnQemu,
} from "./qemu_process.ts";
import { QmpClient, QmpClosedError, type QmpEvent } from "./qmp_client.ts";
import {
  makeRunDir,
  reapOrphan,
  removeRunFiles,
  restrictSockets,
  type RunDirPaths,
  runDirPaths,
} from "./run_dir.ts";
import { SerialConsole } from "./serial_console.ts";
import { checkSpec, type VirtualMachineSpec } from "./vm_spec.ts";
import { removeIfThere } from "../fs_atomic.ts";

export { QemuError } from "./qemu_process.ts";
export type { Accelerator } from "./qemu_args.ts";

/** Why QEMU ended. */
export type VmExitReason =
  /** The guest powered off (by itself or after an ACPI power-button press). */
  | "poweroff"
  /** The guest rebooted; QEMU runs with `-no-reboot`, so the VAT restarts it. */
  | "reboot"
  /** The guest kernel panicked (and told QEMU, through the pvpanic device). */
  | "panic"
  /** QEMU was told to quit (e.g. the guest ignored the power button). */
  | "quit"
  /** `suspendTo()` saved the memory image, then QEMU quit. */
  | "suspended"
  /** `kill()`, or a signal from outside (SIGTERM, SIGINT). */
  | "killed"
  /** QEMU exited or died without being asked to: see `error`. */
  | "crashed";

/** How QEMU ended. */
export interface VmExit {
  reason: VmExitReason;
  /** The exit code, or null if a signal ended it. */
  code: number | null;
  signal: Deno.Signal | null;
  /** For `crashed`: what happened, with the end of QEMU's output. */
  error?: QemuError;
}

/** What `onEvent()` listeners hear, translated from QMP events. */
export type VmEvent =
  /** QEMU is shutting down: it exits right after (`-no-reboot`). */
  | { type: "shutdown"; guest: boolean; reason: string }
  /** The machine was reset (only by QMP `system_reset`: guest reboots end QEMU). */
  | { type: "reset"; guest: boolean; reason: string }
  /** The ACPI power button was pressed (`powerdown()`). */
  | { type: "powerdown" }
  /** The guest's CPUs stopped (pause, suspend, an I/O error with action `stop`). */
  | { type: "stop" }
  /** The guest's CPUs run again. */
  | { type: "resume" }
  /** A disk request failed; `disk` is its role (`system`, `user`, `ephemeral`). */
  | {
    type: "block-io-error";
    disk: string;
    operation: string;
    action: string;
    noSpace: boolean;
    reason: string;
  };

/** What `status()` reports. */
export interface VmStatus {
  /** Whether the guest's CPUs run. */
  running: boolean;
  /**
   * QEMU's run state (`running`, `paused`, `io-error`, `finish-migrate`,
   * `postmigrate`, `shutdown`, `guest-panicked`, ...), or `exited`.
   */
  status: string;
}

/** A memory image written by `suspendTo()`. */
export interface SuspendedImage {
  path: string;
  sizeBytes: number;
  /** The machine type to resume it on (`VirtualMachineSpec.machine`). */
  machineType: string;
  /** The accelerator it ran on; resume on the same one. */
  accel: Accelerator;
}

/** How long `quit` may take before QEMU gets SIGKILL. */
const _QUIT_GRACE_MS = 5000;
const _DEFAULT_START_TIMEOUT_MS = 15_000;
const _DEFAULT_POWERDOWN_TIMEOUT_MS = 60_000;
const _DEFAULT_SUSPEND_TIMEOUT_MS = 120_000;
const _RESUME_TIMEOUT_MS = 120_000;
const _POLL_MS = 20;
const _LIFE_POLL_MS = 100;
const _STATUS_POLL_MS = 1000;

/**
 * How long a guest that `auto` put on KVM has to show a sign of life before it is
 * restarted under TCG. A healthy KVM guest reads its disk or prints within a second
 * or two (the BIOS reads the boot sector at once; a kernel booted directly probes its
 * virtio disks about a second in); a hung one never does.
 */
export const KVM_SIGN_OF_LIFE_TIMEOUT_MS = 15_000;
/** Migration to a local file should not be throttled (QEMU's default is 32 MiB/s). */
const _MIGRATION_BYTES_PER_SECOND = 64 * 1024 * 1024 * 1024;

/** A running QEMU; made by `VirtualMachine.start()`. */
export class VirtualMachine {
  /** For messages: the spec's name, or the run directory's. */
  readonly name: string;
  /** The accelerator the guest runs on. */
  readonly accel: Accelerator;
  /** The machine type QEMU resolved (e.g. `pc` → `pc-i440fx-7.2`). */
  readonly machineType: string;
  /** The run directory's files. */
  readonly paths: RunDirPaths;
  /** QEMU's process id. */
  readonly pid: number;
  /** The guest's serial console. */
  readonly console: SerialConsole;
  /**
   * The screen: VNC (plain RFB, security type None) on this Unix socket in the 0700 run
   * directory, or undefined if the VM has no display. QEMU opens no TCP port for it;
   * whoever may see the screen gets it relayed by the VAT (`vat/api/vnc_relay.ts`).
   */
  readonly vncSocket?: string;
  /**
   * Resolves (never rejects) once QEMU has exited and its sockets and pid file are
   * removed.
   */
  readonly exited: Promise<VmExit>;

  #qemu: QemuProcess;
  #qmp: QmpClient;
  #listeners = new Set<(event: VmEvent) => void>();
  #shutdownReason?: string;
  /** What the VAT asked for, which decides the exit reason. */
  #intent?: "powerdown" | "quit" | "suspend" | "kill";
  #suspended = false;
  #hasExited = false;

  private constructor(init: {
    name: string;
    accel: Accelerator;
    machineType: string;
    paths: RunDirPaths;
    qemu: QemuProcess;
    qmp: QmpClient;
    console: SerialConsole;
    vncSocket?: string;
  }) {
    this.name = init.name;
    this.accel = init.accel;
    this.machineType = init.machineType;
    this.paths = init.paths;
    this.pid = init.qemu.pid;
    this.console = init.console;
    this.vncSocket = init.vncSocket;
    this.#qemu = init.qemu;
    this.#qmp = init.qmp;
    this.#qmp.subscribe((event) => this.#onQmpEvent(event));
    this.exited = this.#qemu.status.then(async (status) => {
      this.#hasExited = true;
      this.#qmp.close();
      this.console.close();
      await removeRunFiles(this.paths).catch(() => {});
      return this.#exitOf(status);
    });
  }

  /**
   * Starts QEMU for `spec` and resolves once the guest runs (booting, or resumed from
   * `spec.resumeFrom`). Throws `UsageError` for a bad spec, `NotFoundError` if QEMU or
   * the memory image is missing, and `QemuError` if QEMU fails to start, with its
   * reason and the end of its output. On failure nothing is left running.
   */
  static async start(spec: VirtualMachineSpec): Promise<VirtualMachine> {
    checkSpec(spec);
    const paths = runDirPaths(spec.runDir);
    const name = spec.name ?? paths.dir.slice(paths.dir.lastIndexOf("/") + 1);
    if (spec.resumeFrom !== undefined) await _checkImage(spec.resumeFrom, name);
    await makeRunDir(paths.dir);
    await reapOrphan(paths.dir);
    const choice = spec.accel === "kvm" || spec.accel === "tcg"
      ? null
      : spec.accelerator ?? sharedAcceleratorChoice();
    const decision = await choice?.decide();
    const accel = decision?.accel ?? (spec.accel as Accelerator);
    const activity = spec.activity ?? (() => 0);
    const vm = await VirtualMachine.#launch(spec, paths, name, accel);
    // Only a guest that `auto` put on KVM is watched: the user's own setting is the
    // last word, and a resumed guest may rightly sit idle.
    if (accel !== "kvm" || decision?.setting !== "auto" || spec.resumeFrom !== undefined) {
      return vm;
    }
    const alive = await vm.#showsLife(
      activity,
      spec.signOfLifeTimeoutMs ?? KVM_SIGN_OF_LIFE_TIMEOUT_MS,
    );
    if (alive) return vm;
    await vm.kill();
    await choice!.kvmHangsGuests(name);
    return await VirtualMachine.#launch(spec, paths, name, "tcg");
  }

  /** Spawns QEMU for `spec` on `accel` and lets the guest run. */
  static async #launch(
    spec: VirtualMachineSpec,
    paths: RunDirPaths,
    name: string,
    accel: Accelerator,
  ): Promise<VirtualMachine> {
    const binary = spec.qemuBinary ?? QEMU_BINARY;
    const qemu = spawnQemu(binary, qemuArgs(spec, paths, accel));
    let qmp: QmpClient | undefined;
    let serial: SerialConsole | undefined;
    try {
      const deadline = Date.now() + (spec.startTimeoutMs ?? _DEFAULT_START_TIMEOUT_MS);
      qmp = await _connectQmp(paths, qemu, deadline, name);
      // QEMU creates every chardev before it serves QMP, so the console is there.
      serial = await SerialConsole.connect(paths.consoleSocket);
      // QEMU made its sockets with the VAT's umask; the 0700 directory already keeps
      // others out, and 0600 keeps them out should the directory ever be opened up.
      await restrictSockets(paths);
      if (spec.resumeFrom !== undefined) await _resume(qmp, qemu, spec.resumeFrom, name);
      const machineType = await _machineType(qmp, spec.machine ?? "pc");
      const vm = new VirtualMachine({
        name,
        accel,
        machineType,
        paths,
        qemu,
        qmp,
        console: serial,
        vncSocket: spec.display === false ? undefined : paths.vncSocket,
      });
      await qmp.execute("cont");
      return vm;
    } catch (err) {
      qemu.kill("SIGKILL");
      const status = await qemu.status;
      const exitedByItself = status.signal !== "SIGKILL";
      qmp?.close();
      serial?.close();
      await removeRunFiles(paths).catch(() => {});
      const output = qemu.outputTail();
      if (isMissingBinary(status, output)) throw qemuNotInstalled(binary);
      if (err instanceof QemuError || err instanceof UsageError) throw err;
      const what = exitedByItself
        ? `QEMU for ${name} exited while starting (${_describe(status)})`
        : `QEMU for ${name} failed to start: ${err instanceof Error ? err.message : err}`;
      throw new QemuError(what, output, { cause: err });
    }
  }

  /**
   * Whether the guest shows a sign of life within `timeoutMs`: a byte on its serial
   * console, a disk request (`activity()` counts them), or QEMU leaving the `running`
   * state by itself (an exit, a pause, a shutdown). `internal-error` is the one state
   * that says the opposite. The instruction pointer is no sign: on a kvm_pvm host it
   * moves while the guest hangs (measured), and an idle guest keeps it still.
   */
  async #showsLife(activity: () => number, timeoutMs: number): Promise<boolean> {
    const requests = activity();
    const deadline = Date.now() + timeoutMs;
    let nextStatus = 0;
    while (Date.now() < deadline) {
      if (this.#hasExited || this.console.position > 0 || activity() !== requests) return true;
      if (Date.now() >= nextStatus) {
        nextStatus = Date.now() + _STATUS_POLL_MS;
        const { status } = await this.status().catch(() => ({ status: "exited" }));
        if (status === "internal-error") return false;
        if (status !== "running") return true;
      }
      await _sleep(_LIFE_POLL_MS);
    }
    return false;
  }

  /** QEMU's run state; `{ running: false, status: "exited" }` once QEMU is gone. */
  async status(): Promise<VmStatus> {
    if (this.#hasExited) return { running: false, status: "exited" };
    try {
      const answer = await this.#qmp.execute<{ running: boolean; status: string }>(
        "query-status",
      );
      return { running: answer.running, status: answer.status };
    } catch (err) {
      if (err instanceof QmpClosedError) return { running: false, status: "exited" };
      throw err;
    }
  }

  /**
   * Calls `listener` with every VM event from now on, until the returned function is
   * called.
   */
  onEvent(listener: (event: VmEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Stops the appliance the polite way: presses the ACPI power button and waits up to
   * `timeoutMs` for the guest to power off; then tells QEMU to quit, and after a few
   * seconds more kills it. Resolves with how QEMU ended (`poweroff` if the guest
   * obeyed). A paused guest cannot see the button: resume it first, or expect `quit`.
   */
  async powerdown(timeoutMs = _DEFAULT_POWERDOWN_TIMEOUT_MS): Promise<VmExit> {
    if (this.#hasExited) return this.exited;
    this.#intent ??= "powerdown";
    try {
      await this.#qmp.execute("system_powerdown");
    } catch (err) {
      if (!(err instanceof QmpClosedError)) throw err;
    }
    if (await _settlesWithin(this.exited, timeoutMs)) return this.exited;
    return this.#quit();
  }

  /** Stops the guest's CPUs (QMP `stop`); the VM keeps its state. */
  async pause(): Promise<void> {
    this.#checkRunning("pause");
    await this.#qmp.execute("stop");
  }

  /** Runs the guest's CPUs again (QMP `cont`). */
  async resume(): Promise<void> {
    this.#checkRunning("resume");
    await this.#qmp.execute("cont");
  }

  /**
   * Suspends the appliance to a memory image at `path`: stops the guest, has QEMU
   * write its whole state (memory and devices; disk writes are flushed to the NBD
   * server first) to `path`, then ends QEMU (exit reason `suspended`). Resolves once
   * the image is complete and on disk (fsynced, renamed into place, directory
   * fsynced). If saving fails, the guest goes on as before and this rejects with
   * `QemuError`; no file is left at `path`.
   *
   * The disks must stay exactly as they are now until the VM resumes from the image.
   */
  async suspendTo(
    path: string,
    options: { timeoutMs?: number } = {},
  ): Promise<SuspendedImage> {
    this.#checkRunning("suspend");
    if (this.#intent) {
      throw new UsageError(`cannot suspend ${this.name}: it is already stopping`);
    }
    this.#intent = "suspend";
    const partial = `${path}.partial`;
    const { running } = await this.status();
    try {
      if (running) await this.#qmp.execute("stop");
      await this.#qmp.execute("migrate-set-parameters", {
        "max-bandwidth": _MIGRATION_BYTES_PER_SECOND,
      });
      await this.#qmp.execute("migrate", { uri: `exec:cat > ${_shellQuote(partial)}` });
      await this.#waitForMigration(options.timeoutMs ?? _DEFAULT_SUSPEND_TIMEOUT_MS);
    } catch (err) {
      await this.#qmp.execute("migrate_cancel").catch(() => {});
      if (running) await this.#qmp.execute("cont").catch(() => {});
      this.#intent = undefined;
      await removeIfThere(partial);
      if (err instanceof QemuError) throw err;
      throw new QemuError(
        `suspending ${this.name} to ${path} failed: ${err instanceof Error ? err.message : err}`,
        this.#qemu.outputTail(),
        { cause: err },
      );
    }
    this.#suspended = true;
    // QEMU closes the migration stream, and waits for `cat` to exit, before it exits.
    const exit = await this.#quit();
    if (exit.code !== 0) {
      await removeIfThere(partial);
      throw new QemuError(
        `suspending ${this.name} to ${path} failed: QEMU did not quit cleanly after ` +
          `saving (${exit.signal ?? `exit code ${exit.code}`}), so the image may be incomplete`,
        this.#qemu.outputTail(),
      );
    }
    const sizeBytes = await _makeDurable(partial, path);
    return { path, sizeBytes, machineType: this.machineType, accel: this.accel };
  }

  /** Kills QEMU (SIGKILL) and resolves once it is gone. The guest loses its state. */
  async kill(): Promise<VmExit> {
    if (!this.#hasExited) {
      if (this.#intent !== "suspend") this.#intent = "kill";
      this.#qemu.kill("SIGKILL");
    }
    return await this.exited;
  }

  /** Kills QEMU if it still runs (for `await using`). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }

  async #quit(): Promise<VmExit> {
    if (this.#intent !== "suspend") this.#intent = "quit";
    try {
      await this.#qmp.execute("quit", undefined, { timeoutMs: _QUIT_GRACE_MS });
    } catch {
      // Closed (QEMU is exiting) or hung: the wait below decides.
    }
    if (await _settlesWithin(this.exited, _QUIT_GRACE_MS)) return this.exited;
    this.#qemu.kill("SIGKILL");
    return await this.exited;
  }

  async #waitForMigration(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const info = await this.#qmp.execute<{ status?: string; "error-desc"?: string }>(
        "query-migrate",
      );
      if (info.status === "completed") return;
      if (info.status === "failed" || info.status === "cancelled") {
        throw new QemuError(
          `saving the memory image of ${this.name} ${info.status}: ${
            info["error-desc"] ?? "QEMU gave no reason"
          }`,
          this.#qemu.outputTail(),
        );
      }
      if (Date.now() > deadline) {
        throw new QemuError(
          `saving the memory image of ${this.name} did not finish within ${timeoutMs} ms`,
          this.#qemu.outputTail(),
        );
      }
      await _sleep(_POLL_MS);
    }
  }

  #checkRunning(operation: string): void {
    if (this.#hasExited) {
      throw new UsageError(`cannot ${operation} ${this.name}: its QEMU has exited`);
    }
  }

  #onQmpEvent(event: QmpEvent): void {
    const vmEvent = _vmEvent(event);
    if (!vmEvent) return;
    if (vmEvent.type === "shutdown") this.#shutdownReason = vmEvent.reason;
    for (const listener of [...this.#listeners]) {
      try {
        listener(vmEvent);
      } catch {
        // A listener's failure must not disturb the supervision.
      }
    }
  }

  #exitOf(status: Deno.CommandStatus): VmExit {
    const signal = status.signal;
    const code = signal ? null : status.code;
    const exit = (reason: VmExitReason): VmExit => ({ reason, code, signal });
    if (this.#suspended) return exit("suspended");
    if (this.#intent === "kill") return exit("killed");
    switch (this.#shutdownReason) {
      case "guest-shutdown":
        return exit("poweroff");
      case "guest-reset":
        return exit("reboot");
      case "guest-panic":
        return exit("panic");
      case "host-qmp-quit":
        return exit("quit");
      case "host-signal":
        return exit("killed");
    }
    if (this.#intent === "quit" && signal === "SIGKILL") return exit("killed");
    return {
      ...exit("crashed"),
      error: new QemuError(
        `QEMU for ${this.name} ended unexpectedly (${_describe(status)})`,
        this.#qemu.outputTail(),
      ),
    };
  }
}

function _vmEvent(event: QmpEvent): VmEvent | undefined {
  const data = event.data;
  switch (event.event) {
    case "SHUTDOWN":
      return { type: "shutdown", guest: data.guest === true, reason: String(data.reason) };
    case "RESET":
      return { type: "reset", guest: data.guest === true, reason: String(data.reason) };
    case "POWERDOWN":
      return { type: "powerdown" };
    case "STOP":
      return { type: "stop" };
    case "RESUME":
      return { type: "resume" };
    case "BLOCK_IO_ERROR":
      return {
        type: "block-io-error",
        disk: String(data["node-name"] ?? data.device ?? ""),
        operation: String(data.operation ?? ""),
        action: String(data.action ?? ""),
        noSpace: data.nospace === true,
        reason: String(data.reason ?? ""),
      };
  }
  return undefined;
}

/** Connects to QMP once QEMU listens; throws `QemuError` if QEMU exits or the deadline passes. */
async function _connectQmp(
  paths: RunDirPaths,
  qemu: QemuProcess,
  deadline: number,
  name: string,
): Promise<QmpClient> {
  while (true) {
    if (qemu.hasExited) {
      const status = await qemu.status;
      throw new QemuError(
        `QEMU for ${name} exited while starting (${_describe(status)})`,
        qemu.outputTail(),
      );
    }
    try {
      return await QmpClient.connect(paths.qmpSocket);
    } catch (err) {
      // Not listening yet: QEMU creates the socket early, but not at once.
      if (
        !(err instanceof Deno.errors.NotFound || err instanceof Deno.errors.ConnectionRefused)
      ) {
        throw err;
      }
    }
    if (Date.now() > deadline) {
      throw new QemuError(
        `QEMU for ${name} did not open its control socket ${paths.qmpSocket} in time`,
        qemu.outputTail(),
      );
    }
    await Promise.race([_sleep(_POLL_MS), qemu.status]);
  }
}

/** Loads the memory image into a QEMU started with `-incoming defer`. */
async function _resume(
  qmp: QmpClient,
  qemu: QemuProcess,
  image: string,
  name: string,
): Promise<void> {
  await qmp.execute("migrate-incoming", { uri: `exec:cat ${_shellQuote(image)}` });
  const deadline = Date.now() + _RESUME_TIMEOUT_MS;
  while (true) {
    // A failed load makes QEMU exit; the caller reports its output.
    const { status } = await qmp.execute<{ status: string }>("query-status");
    if (status !== "inmigrate") {
      if (status === "paused" || status === "prelaunch") return;
      throw new QemuError(
        `resuming ${name} from ${image} failed: QEMU is ${status} after loading it`,
        qemu.outputTail(),
      );
    }
    if (Date.now() > deadline) {
      throw new QemuError(
        `resuming ${name} from ${image} did not finish within ${_RESUME_TIMEOUT_MS} ms`,
        qemu.outputTail(),
      );
    }
    await _sleep(_POLL_MS);
  }
}

async function _machineType(qmp: QmpClient, machine: string): Promise<string> {
  const machines = await qmp.execute<{ name: string; alias?: string }[]>("query-machines");
  return machines.find((m) => m.alias === machine)?.name ?? machine;
}

async function _checkImage(path: string, name: string): Promise<void> {
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) throw new UsageError(`memory image ${path} of ${name} is not a file`);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new NotFoundError(`cannot resume ${name}: memory image ${path} does not exist`, {
        cause: err,
      });
    }
    throw err;
  }
}

/** fsyncs `partial`, renames it to `path`, fsyncs the directory; returns its size. */
async function _makeDurable(partial: string, path: string): Promise<number> {
  const file = await Deno.open(partial, { read: true, write: true });
  let size: number;
  try {
    await file.sync();
    size = (await file.stat()).size;
  } finally {
    file.close();
  }
  if (size === 0) {
    await removeIfThere(partial);
    throw new QemuError(`QEMU wrote an empty memory image to ${partial}`);
  }
  await Deno.rename(partial, path);
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  const handle = await Deno.open(dir, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
  return size;
}

/** A word for `sh -c`: single-quoted, with embedded quotes closed and escaped. */
function _shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

function _describe(status: Deno.CommandStatus): string {
  return status.signal ? `killed by ${status.signal}` : `exit code ${status.code}`;
}

/** Whether `promise` settles within `ms`. */
async function _settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function _sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
