/**
 * restic, the peer a user would otherwise pick: the raw user-disk image backed up into
 * a local restic repository (format version 2, so compressed like vat's chunks), with
 * its cache in the benchmark's directory. Each backup runs under /usr/bin/time for its
 * wall time and CPU; "bytes added" are restic's own `data_added` (new data before
 * compression) and how much the repository grew on disk.
 *
 * @module
 */

import { runChecked, treeBytes } from "./rig.ts";

/** One `restic backup` and what it cost. */
export interface ResticRun {
  /** `data_added` of the JSON summary. */
  dataAddedBytes: number;
  /** Growth of the repository directory. */
  repoGrowthBytes: number;
  wallS: number;
  cpuS: number;
}

/** A local restic repository. */
export class ResticRepo {
  readonly dir: string;
  readonly #cacheDir: string;
  readonly #env: Record<string, string>;

  constructor(dir: string, cacheDir: string) {
    this.dir = dir;
    this.#cacheDir = cacheDir;
    this.#env = { RESTIC_PASSWORD: "vat-bench", RESTIC_REPOSITORY: dir };
  }

  async init(): Promise<void> {
    await runChecked("restic", ["init", "--repository-version", "2"], this.#env);
  }

  /** Backs up `path` (a raw disk image). */
  async backup(path: string): Promise<ResticRun> {
    const before = await treeBytes(this.dir);
    const timeFile = await Deno.makeTempFile({ prefix: "vat-bench-time-" });
    try {
      const stdout = await runChecked("/usr/bin/time", [
        "-f",
        "%e %U %S",
        "-o",
        timeFile,
        "restic",
        "backup",
        "--json",
        "--cache-dir",
        this.#cacheDir,
        path,
      ], this.#env);
      const summary = stdout.split("\n").filter((l) =>
        l.includes('"summary"')
      ).map((l) => JSON.parse(l))[0];
      if (!summary) throw new Error(`restic backup ${path} printed no summary:\n${stdout}`);
      const [wall, user, sys] = (await Deno.readTextFile(timeFile)).trim().split("\n").pop()!
        .split(" ").map(Number);
      return {
        dataAddedBytes: Number(summary.data_added),
        repoGrowthBytes: (await treeBytes(this.dir)) - before,
        wallS: wall,
        cpuS: user + sys,
      };
    } finally {
      await Deno.remove(timeFile);
    }
  }
}
