/**
 * The steps of starting and saving a QEMU that `VirtualMachine` takes: connecting to
 * QMP once QEMU listens, loading a memory image, asking the resolved machine type,
 * checking and making durable a memory image, and the words for how QEMU ended.
 *
 * @module
 */

import { NotFoundError, UsageError } from "../errors.ts";
import { removeIfThere } from "../fs_atomic.ts";
import { QemuError, type QemuProcess } from "./qemu_process.ts";
import { QmpClient } from "./qmp_client.ts";
import type { RunDirPaths } from "./run_dir.ts";

/** How often QEMU is asked while it starts or loads. */
const _POLL_MS = 20;
const _RESUME_TIMEOUT_MS = 120_000;

/** Connects to QMP once QEMU listens; throws `QemuError` if QEMU exits or the deadline passes. */
export async function connectQmp(
  paths: RunDirPaths,
  qemu: QemuProcess,
  deadline: number,
  name: string,
): Promise<QmpClient> {
  while (true) {
    if (qemu.hasExited) {
      const status = await qemu.status;
      throw new QemuError(
        `QEMU for ${name} exited while starting (${describeExit(status)})`,
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
    await Promise.race([_pause(_POLL_MS), qemu.status]);
  }
}

/** Loads the memory image into a QEMU started with `-incoming defer`. */
export async function resumeMemoryImage(
  qmp: QmpClient,
  qemu: QemuProcess,
  image: string,
  name: string,
): Promise<void> {
  await qmp.execute("migrate-incoming", { uri: `exec:cat ${shellQuote(image)}` });
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
    await _pause(_POLL_MS);
  }
}

export async function machineTypeOf(qmp: QmpClient, machine: string): Promise<string> {
  const machines = await qmp.execute<{ name: string; alias?: string }[]>("query-machines");
  return machines.find((m) => m.alias === machine)?.name ?? machine;
}

export async function checkMemoryImage(path: string, name: string): Promise<void> {
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
export async function makeDurable(partial: string, path: string): Promise<number> {
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
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

export function describeExit(status: Deno.CommandStatus): string {
  return status.signal ? `killed by ${status.signal}` : `exit code ${status.code}`;
}

function _pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
