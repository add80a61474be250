/**
 * The load generators of the NBD benchmark, each a real NBD client run as a child
 * process: `qemu-img bench` (QEMU's own block layer, as a guest's disk uses it) and
 * `fio` with its libnbd engine (truly random offsets).
 *
 * @module
 */

import { runCommand } from "./processes.ts";

/** An NBD URI for a server on a Unix socket. */
export function nbdUri(socketPath: string): string {
  return `nbd+unix:///?socket=${socketPath}`;
}

/** What `qemuImgBench()` does. */
export interface QemuImgBenchOptions {
  /** Requests to send. */
  count: number;
  /** Requests in flight at once. */
  depth: number;
  /** Bytes per request. */
  requestBytes: number;
  /**
   * Bytes from one request's offset to the next (default `requestBytes`: sequential).
   * Offsets wrap around the end of the disk, so a large step whose page count is
   * coprime with the disk's visits every page once, in an order with no locality.
   */
  stepBytes?: number;
}

/** Runs `qemu-img bench` (reads) on `target` (an NBD URI or a raw file); returns seconds. */
export async function qemuImgBench(target: string, options: QemuImgBenchOptions): Promise<number> {
  const args = [
    "bench",
    "-f",
    "raw",
    "-c",
    String(options.count),
    "-d",
    String(options.depth),
    "-s",
    String(options.requestBytes),
    "-S",
    String(options.stepBytes ?? options.requestBytes),
  ];
  // A file is read through the page cache, as nbdkit's file plugin reads it.
  if (!target.startsWith("nbd")) args.push("-t", "writeback", "-i", "threads");
  const { stdout } = await runCommand("qemu-img", [...args, target]);
  const m = /Run completed in ([0-9.]+) seconds/.exec(stdout);
  if (!m) throw new Error(`qemu-img bench printed no time:\n${stdout}`);
  return Number(m[1]);
}

/** What `fioRandomRead()` does. */
export interface FioOptions {
  requestBytes: number;
  depth: number;
  runtimeSec: number;
}

/**
 * Random reads with fio for `runtimeSec`; returns reads per second. `target` is an NBD
 * URI (fio's nbd engine) or a file (read with pread through the page cache).
 */
export async function fioRandomRead(target: string, options: FioOptions): Promise<number> {
  const args = [
    "--name=randread",
    "--rw=randread",
    `--bs=${options.requestBytes}`,
    `--iodepth=${options.depth}`,
    "--time_based",
    `--runtime=${options.runtimeSec}`,
    "--output-format=json",
    // fio drops the file's pages from the page cache first unless told not to.
    "--invalidate=0",
  ];
  if (target.startsWith("nbd")) args.push("--ioengine=nbd", `--uri=${target}`);
  // fio's async engines on buffered files fall back to slow paths here; pread is the
  // fastest way to the page cache, so the file row is the ceiling, at depth 1.
  else args.push("--ioengine=psync", `--filename=${target}`);
  const { stdout } = await runCommand("fio", args);
  // The nbd engine prints a line before the JSON.
  const json = JSON.parse(stdout.slice(stdout.indexOf("{")));
  const read = json.jobs?.[0]?.read;
  if (typeof read?.iops !== "number") throw new Error(`fio printed no IOPS:\n${stdout}`);
  return read.iops;
}

/** Whether `cmd` can be run (`cmd --version` succeeds). */
export async function haveCommand(cmd: string): Promise<boolean> {
  try {
    await runCommand(cmd, ["--version"]);
    return true;
  } catch {
    return false;
  }
}
