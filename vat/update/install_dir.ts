/**
 * The install directory: three slots of vat's releases, as the paper keeps three
 * versions of the VAT image (the one running, the one the next boot starts, and one
 * being downloaded), and the small files that say which is which (docs/UPDATE.md):
 *
 * ```
 * INSTALL/A/ B/ C/        slots: a release's files, `launch`, and `release.json` (written last)
 * INSTALL/current         "A": the last slot that proved itself
 * INSTALL/next            "B 3": the staged slot and the boot attempts it has left
 * INSTALL/failed          "7": the last release that used up its attempts
 * INSTALL/healthy         "B 4242": written by the daemon of slot B, pid 4242, once it answers
 * INSTALL/vat-launcher.sh the launcher (launcher_script.ts)
 * INSTALL/lock            held by the one updater at work
 * ```
 *
 * Every file is replaced by rename after an fsync, so each switch is atomic.
 *
 * @module
 */

import { PermanentError, UsageError } from "../errors.ts";
import { removeIfThere, syncDir, writeFileAtomic } from "../fs_atomic.ts";
import { BOOT_ATTEMPTS, LAUNCHER_SCRIPT } from "./launcher_script.ts";
import { V8_FLAGS } from "../v8_flags.ts";

/** The slots' names. */
export const SLOTS = ["A", "B", "C"] as const;
export type Slot = (typeof SLOTS)[number];

/** `SLOT/release.json`: what a complete slot holds. */
export interface SlotRelease {
  /** The release's version number in its repository. */
  release: number;
  vatVersion: string;
  kind: "bundle" | "binary";
  repoId: string;
  installedAt: string;
  note?: string;
}

/** Which slot is which now. */
export interface InstallState {
  dir: string;
  current: { slot: Slot; release: SlotRelease | null } | null;
  next: { slot: Slot; attemptsLeft: number; release: SlotRelease | null } | null;
  /** The release number that last failed to prove itself (never installed again). */
  failed: number | null;
}

/** An install directory. */
export class InstallDir {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir.replace(/\/+$/, "") || "/";
  }

  /** The directory of `slot`. */
  slotPath(slot: Slot): string {
    return `${this.dir}/${slot}`;
  }

  /** Reads the state files (missing ones are empty). */
  async read(): Promise<InstallState> {
    const current = _parseSlot((await this.#line("current"))?.split(" ")[0]);
    const nextLine = (await this.#line("next"))?.split(" ");
    const next = _parseSlot(nextLine?.[0]);
    const attemptsLeft = Number(nextLine?.[1] ?? 0);
    const failedText = await this.#line("failed");
    return {
      dir: this.dir,
      current: current ? { slot: current, release: await this.slotRelease(current) } : null,
      next: next
        ? {
          slot: next,
          attemptsLeft: Number.isInteger(attemptsLeft) ? attemptsLeft : 0,
          release: await this.slotRelease(next),
        }
        : null,
      failed: failedText && /^\d+$/.test(failedText) ? Number(failedText) : null,
    };
  }

  /** A slot's `release.json`, or null when the slot is empty or incomplete. */
  async slotRelease(slot: Slot): Promise<SlotRelease | null> {
    try {
      return JSON.parse(await Deno.readTextFile(`${this.slotPath(slot)}/release.json`));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound || err instanceof SyntaxError) return null;
      throw err;
    }
  }

  /**
   * The slot that is neither current nor next nor `running` (the slot this process runs
   * from, which is one of them unless the files were changed by hand): where a download goes.
   */
  async freeSlot(running: Slot | null = null): Promise<Slot> {
    const state = await this.read();
    const free = SLOTS.find((s) =>
      s !== state.current?.slot && s !== state.next?.slot && s !== running
    );
    if (!free) {
      throw new PermanentError(
        `${this.dir} has no free slot: current, next and the running slot are all different; ` +
          "restart vat through its launcher first",
      );
    }
    return free;
  }

  /** Empties `slot` for a download (whatever a crashed download left there goes). */
  async clearSlot(slot: Slot): Promise<string> {
    const path = this.slotPath(slot);
    await removeIfThere(path, { recursive: true });
    await Deno.mkdir(path, { recursive: true, mode: 0o755 });
    return path;
  }

  /**
   * Completes a slot whose files are written: its `launch` script, then its
   * `release.json`, which marks it complete.
   */
  async sealSlot(slot: Slot, release: SlotRelease): Promise<void> {
    const path = this.slotPath(slot);
    const launch = release.kind === "bundle"
      ? `#!/bin/sh\nhere=$(cd "$(dirname "$0")" && pwd)\n` +
        `exec "$here/deno" run -A --no-config --v8-flags=${V8_FLAGS} "$here/vat.js" "$@"\n`
      : `#!/bin/sh\nhere=$(cd "$(dirname "$0")" && pwd)\nexec "$here/vat" "$@"\n`;
    await writeFileAtomic(`${path}/launch`, new TextEncoder().encode(launch), { mode: 0o755 });
    await writeFileAtomic(
      `${path}/release.json`,
      new TextEncoder().encode(JSON.stringify(release, null, 2) + "\n"),
    );
    await syncDir(this.dir);
  }

  /** Makes `slot` the one the launcher tries next, with its boot attempts. */
  async stage(slot: Slot, attempts = BOOT_ATTEMPTS): Promise<void> {
    await this.ensureLauncher();
    await writeFileAtomic(`${this.dir}/next`, new TextEncoder().encode(`${slot} ${attempts}\n`));
  }

  /** Writes `vat-launcher.sh` unless it is there with this vat's text. */
  async ensureLauncher(): Promise<string> {
    const path = `${this.dir}/vat-launcher.sh`;
    const have = await Deno.readTextFile(path).catch(() => null);
    if (have !== LAUNCHER_SCRIPT) {
      await writeFileAtomic(path, new TextEncoder().encode(LAUNCHER_SCRIPT), { mode: 0o755 });
    }
    return path;
  }

  /** Holds the install directory's lock while `fn` runs (one updater at a time). */
  async locked<T>(fn: () => Promise<T>): Promise<T> {
    await Deno.mkdir(this.dir, { recursive: true, mode: 0o755 });
    const lock = await Deno.open(`${this.dir}/lock`, { read: true, write: true, create: true });
    try {
      try {
        await lock.lock(true);
      } catch (err) {
        throw new UsageError(`cannot lock ${this.dir}/lock: ${(err as Error).message}`, {
          cause: err,
        });
      }
      return await fn();
    } finally {
      lock.close();
    }
  }

  /** Written by a daemon started by the launcher once it answers its health check. */
  async markHealthy(slot: Slot, pid: number): Promise<void> {
    await writeFileAtomic(`${this.dir}/healthy`, new TextEncoder().encode(`${slot} ${pid}\n`));
  }

  async #line(name: string): Promise<string | null> {
    try {
      return (await Deno.readTextFile(`${this.dir}/${name}`)).trim();
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      throw err;
    }
  }
}

/** A slot name, or null for anything else. */
export function parseSlot(text: string | undefined): Slot | null {
  return _parseSlot(text);
}

function _parseSlot(text: string | undefined): Slot | null {
  return SLOTS.includes(text as Slot) ? text as Slot : null;
}
