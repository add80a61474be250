/**
 * Suspended appliances' memory images: `memory.img` (QEMU's migration stream) and
 * `memory.json` (its machine type and the version it was suspended on) in the
 * appliance's directory, and `suspendedVersion` in the state DB. An image resumes only
 * on the version it was taken on, and only with the user disk it was taken with.
 *
 * @module
 */

import { removeIfThere, writeFileAtomic } from "../fs_atomic.ts";
import type { ApplianceRun } from "./appliance_run.ts";
import type { ApplianceRecord, StateDb } from "./state_db.ts";

/** Where a start resumes from. */
export interface ResumePoint {
  path: string;
  machineType: string;
}

/** The memory images of one VAT's appliances. */
export class MemoryImages {
  readonly #db: StateDb;
  readonly #dirOf: (name: string) => string;

  constructor(db: StateDb, dirOf: (name: string) => string) {
    this.#db = db;
    this.#dirOf = dirOf;
  }

  /** Suspends `run` into a memory image; returns once QEMU has exited. */
  async save(name: string, run: ApplianceRun): Promise<void> {
    const dir = this.#dirOf(name);
    const image = await run.vm.suspendTo(`${dir}/memory.img`);
    await run.ended;
    await writeFileAtomic(
      `${dir}/memory.json`,
      new TextEncoder().encode(JSON.stringify({ ...image, version: run.version.number })),
    );
    this.#db.update(name, { suspendedVersion: run.version.number });
  }

  /**
   * The image a start of `version` resumes from, if there is one of that version; an
   * image of an older version cannot run on the newer system disk and is dropped.
   */
  async resumePoint(record: ApplianceRecord, version: number): Promise<ResumePoint | undefined> {
    if (record.suspendedVersion === null) return undefined;
    if (record.suspendedVersion !== version) {
      await this.drop(record.name);
      record.suspendedVersion = null;
      return undefined;
    }
    const dir = this.#dirOf(record.name);
    const saved = JSON.parse(await Deno.readTextFile(`${dir}/memory.json`));
    return { path: `${dir}/memory.img`, machineType: saved.machineType };
  }

  /** Drops `name`'s memory image (resumed, reset, undone or stale). */
  async drop(name: string): Promise<void> {
    const dir = this.#dirOf(name);
    await removeIfThere(`${dir}/memory.img`);
    await removeIfThere(`${dir}/memory.json`);
    this.#db.update(name, { suspendedVersion: null });
  }
}
