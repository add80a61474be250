/**
 * The appliances on this VAT and what a user does with them (the paper's operations):
 * start (the newest version; resuming a memory image of that same version), stop
 * (ACPI powerdown, then a hard quit), suspend (memory image on local storage), reset
 * (the ephemeral disk and memory image go, the user disk stays), delete (the
 * subscription and its user disk), and publish (an administrator's running system
 * disk becomes the next version). Changes are announced as "change" events.
 *
 * @module
 */

import type { ChunkCache } from "../cache/chunk_cache.ts";
import { ConflictError, NotFoundError, PermanentError, UsageError, VatError } from "../errors.ts";
import { loadSigningKey } from "../auth/signing_key.ts";
import { openStore } from "../repo/open_store.ts";
import { type DiskSource, publishDisks, type PublishResult } from "../repo/publish.ts";
import { Repository, type Version } from "../repo/repository.ts";
import type { Store } from "../repo/store.ts";
import { openVersionDisk } from "../disk/version_disk.ts";
import { writeFileAtomic } from "../fs_atomic.ts";
import { runDirPaths } from "../vmm/run_dir.ts";
import { type ApplianceRun, startApplianceRun } from "./appliance_run.ts";
import { type ApplianceRecord, checkApplianceName, type StateDb } from "./state_db.ts";

/** What the UI and CLI show of one appliance. */
export interface ApplianceStatus {
  name: string;
  repo: string;
  state: "stopped" | "starting" | "running" | "stopping" | "suspending" | "suspended";
  /** The version running now (null when not running). */
  runningVersion: number | null;
  /** The newest published version, null when the repository could not be reached. */
  latestVersion: number | null;
  /** A newer version than the running (or suspended) one is published. */
  updateAvailable: boolean;
  /** The newest version says older ones must not start. */
  updateRequired: boolean;
  suspendedVersion: number | null;
  /** Whether the subscription (and its user disk) exists. */
  subscribed: boolean;
  /** QEMU's VNC websocket on loopback, while running. */
  vncWebsocketPort: number | null;
  /** What went wrong last (a failed start, a crash), until the next start. */
  lastError: string | null;
}

/** The appliances of one VAT. */
export class Appliances extends EventTarget {
  readonly #db: StateDb;
  readonly #cache: ChunkCache;
  readonly #stateDir: string;
  readonly #runs = new Map<string, ApplianceRun>();
  readonly #busy = new Map<string, ApplianceStatus["state"]>();
  readonly #errors = new Map<string, string>();
  readonly #latest = new Map<string, { version: number; updateRequired: boolean }>();

  constructor(db: StateDb, cache: ChunkCache, stateDir: string) {
    super();
    this.#db = db;
    this.#cache = cache;
    this.#stateDir = stateDir;
  }

  /** Adds an appliance from `repo` (its name defaults to the repository's last path part). */
  async add(repo: string, name?: string): Promise<ApplianceStatus> {
    const chosen = checkApplianceName(name ?? _defaultName(repo));
    // The repository must exist and hold a version now, so a typo fails here.
    await this.#withRepo(repo, (r) => r.resolveVersion("latest"));
    this.#db.add(chosen, repo);
    this.#changed();
    return await this.status(chosen);
  }

  /** Every appliance's status. */
  async list(): Promise<ApplianceStatus[]> {
    return await Promise.all(this.#db.list().map((r) => this.#statusOf(r)));
  }

  /** One appliance's status. */
  async status(name: string): Promise<ApplianceStatus> {
    return await this.#statusOf(this.#db.get(name));
  }

  /** Starts the appliance at its newest version (resuming a memory image of that version). */
  async start(name: string): Promise<ApplianceStatus> {
    const record = this.#db.get(name);
    if (this.#runs.has(name) || this.#busy.has(name)) {
      throw new ConflictError(`appliance "${name}" is already running on this VAT`);
    }
    this.#busy.set(name, "starting");
    this.#errors.delete(name);
    this.#changed();
    let store: Store | null = null;
    try {
      store = await openStore(record.repo);
      const repo = await Repository.open(store);
      const version = await repo.resolveVersion("latest");
      this.#latest.set(name, {
        version: version.number,
        updateRequired: version.manifest.updateRequired ?? false,
      });
      // The first start creates the subscription: its user disk starts as this
      // version's initial user disk and keeps that base from then on.
      if (record.userBaseVersion === null) {
        this.#db.update(name, { userBaseVersion: version.number });
        record.userBaseVersion = version.number;
      }
      const userBase = await _readVersionOrNull(repo, record.userBaseVersion);
      const dirs = this.#dirs(name);
      let resumeFrom: { path: string; machineType: string } | undefined;
      if (record.suspendedVersion === version.number) {
        const saved = JSON.parse(await Deno.readTextFile(`${dirs.dir}/memory.json`));
        resumeFrom = { path: `${dirs.dir}/memory.img`, machineType: saved.machineType };
      } else if (record.suspendedVersion !== null) {
        // A memory image of an older version cannot run on the newer system disk.
        await this.#dropMemoryImage(name);
      }
      const run = await startApplianceRun({
        repo,
        version,
        userBase,
        cache: this.#cache,
        dirs,
        resumeFrom,
      });
      if (resumeFrom) await this.#dropMemoryImage(name);
      this.#runs.set(name, run);
      this.#db.update(name, { lastVersion: version.number });
      // The run reads chunks through this store until QEMU exits.
      const runStore = store;
      store = null;
      run.ended.then((exit) => {
        runStore.close().catch(() => {});
        this.#runs.delete(name);
        if (exit.reason === "crashed" || exit.reason === "panic") {
          this.#errors.set(
            name,
            `the appliance stopped unexpectedly (${exit.reason}): ${exit.error?.message ?? ""}`
              .trim(),
          );
        }
        this.#changed();
      });
    } catch (err) {
      this.#errors.set(name, (err as Error).message);
      await store?.close().catch(() => {});
      throw err;
    } finally {
      this.#busy.delete(name);
      this.#changed();
    }
    return await this.status(name);
  }

  /** Shuts the appliance down: ACPI powerdown, then a hard quit after `timeoutMs`. */
  async stop(name: string, timeoutMs = 30_000): Promise<ApplianceStatus> {
    const run = this.#running(name);
    this.#busy.set(name, "stopping");
    this.#changed();
    try {
      await run.vm.powerdown(timeoutMs);
      await run.ended;
    } finally {
      this.#busy.delete(name);
      this.#changed();
    }
    return await this.status(name);
  }

  /** Saves the running appliance's memory to local storage and stops it. */
  async suspend(name: string): Promise<ApplianceStatus> {
    const run = this.#running(name);
    this.#busy.set(name, "suspending");
    this.#changed();
    try {
      const dir = this.#dirs(name).dir;
      const image = await run.vm.suspendTo(`${dir}/memory.img`);
      await run.ended;
      await writeFileAtomic(
        `${dir}/memory.json`,
        new TextEncoder().encode(JSON.stringify({ ...image, version: run.version.number })),
      );
      this.#db.update(name, { suspendedVersion: run.version.number });
    } finally {
      this.#busy.delete(name);
      this.#changed();
    }
    return await this.status(name);
  }

  /** Throws away the ephemeral disk and the memory image; the user disk stays. */
  async reset(name: string): Promise<ApplianceStatus> {
    this.#db.get(name);
    this.#notRunning(name, "reset");
    await this.#dropMemoryImage(name);
    await _removeIfThere(`${this.#dirs(name).dir}/ephemeral.raw`);
    this.#changed();
    return await this.status(name);
  }

  /** Deletes the appliance, its subscription and its user disk. */
  async delete(name: string): Promise<void> {
    this.#db.get(name);
    this.#notRunning(name, "delete");
    await Deno.remove(this.#dirs(name).dir, { recursive: true }).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
    this.#db.remove(name);
    this.#latest.delete(name);
    this.#errors.delete(name);
    this.#changed();
  }

  /** The serial console's log. */
  async consoleLog(name: string): Promise<string> {
    this.#db.get(name);
    try {
      return await Deno.readTextFile(runDirPaths(this.#dirs(name).runDir).consoleLog);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return "";
      throw err;
    }
  }

  /** Types `line` and a newline into the running appliance's serial console. */
  async consoleSend(name: string, line: string): Promise<void> {
    await this.#running(name).vm.console.writeLine(line);
  }

  /**
   * Publishes the running appliance's system disk (its base plus the overlay, as the
   * guest has it now) as the next version of its repository, keeping the other disks
   * and the VM description of the running version.
   */
  async publishFrom(name: string, keyPath: string): Promise<PublishResult> {
    const run = this.#running(name);
    const record = this.#db.get(name);
    const key = await loadSigningKey(keyPath);
    const store = await openStore(record.repo, { signingKey: key });
    try {
      const repo = await Repository.open(store);
      const sources: [string, DiskSource][] = [["system", run.system.device]];
      for (const disk of Object.keys(run.version.manifest.disks)) {
        if (disk === "system") continue;
        const base = await openVersionDisk(repo, run.version, disk, this.#cache);
        sources.push([disk, base.device]);
      }
      await run.system.device.flush();
      const result = await publishDisks(repo, sources, run.version.manifest.vm, { key });
      this.#changed();
      return result;
    } finally {
      await store.close();
    }
  }

  /** Stops every running appliance (ACPI powerdown, bounded). */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#runs.keys()].map((name) => this.stop(name, 15_000)));
  }

  /** Names of running appliances. */
  runningNames(): string[] {
    return [...this.#runs.keys()];
  }

  async #statusOf(record: ApplianceRecord): Promise<ApplianceStatus> {
    const run = this.#runs.get(record.name);
    const latest = await this.#latestOf(record);
    const current = run?.version.number ?? record.suspendedVersion ?? record.lastVersion;
    const busy = this.#busy.get(record.name);
    return {
      name: record.name,
      repo: record.repo,
      state: busy ?? (run ? "running" : record.suspendedVersion !== null ? "suspended" : "stopped"),
      runningVersion: run?.version.number ?? null,
      latestVersion: latest?.version ?? null,
      updateAvailable: latest !== null && current !== null && latest.version > current,
      updateRequired: latest?.updateRequired ?? false,
      suspendedVersion: record.suspendedVersion,
      subscribed: record.userBaseVersion !== null,
      vncWebsocketPort: run?.vm.vncWebsocketPort ?? null,
      lastError: this.#errors.get(record.name) ?? null,
    };
  }

  /** The newest version, looked up with a short time limit; the last known one offline. */
  async #latestOf(record: ApplianceRecord) {
    try {
      const found = await _withTimeout(
        this.#withRepo(record.repo, async (repo) => {
          const n = await repo.latestVersion();
          if (n === null) return null;
          const { manifest } = await repo.readVersion(n);
          return { version: n, updateRequired: manifest.updateRequired ?? false };
        }),
        3000,
      );
      if (found) this.#latest.set(record.name, found);
      return found;
    } catch {
      return this.#latest.get(record.name) ?? null;
    }
  }

  async #withRepo<T>(location: string, fn: (repo: Repository) => Promise<T>): Promise<T> {
    const store = await openStore(location);
    try {
      return await fn(await Repository.open(store));
    } finally {
      await store.close();
    }
  }

  #running(name: string): ApplianceRun {
    this.#db.get(name);
    const run = this.#runs.get(name);
    if (!run) throw new UsageError(`appliance "${name}" is not running`);
    return run;
  }

  #notRunning(name: string, what: string): void {
    if (this.#runs.has(name) || this.#busy.has(name)) {
      throw new ConflictError(`appliance "${name}" is running; stop it before you ${what} it`);
    }
  }

  async #dropMemoryImage(name: string): Promise<void> {
    await _removeIfThere(`${this.#dirs(name).dir}/memory.img`);
    await _removeIfThere(`${this.#dirs(name).dir}/memory.json`);
    this.#db.update(name, { suspendedVersion: null });
  }

  #dirs(name: string) {
    return {
      dir: `${this.#stateDir}/appliances/${name}`,
      runDir: `${this.#stateDir}/run/${name}`,
    };
  }

  #changed(): void {
    this.dispatchEvent(new Event("change"));
  }
}

function _defaultName(repo: string): string {
  const last = repo.replace(/[/@]+$/, "").split(/[/:]/).pop() ?? "appliance";
  return last.toLowerCase().replace(/[^a-z0-9._-]/g, "-").replace(/^[^a-z0-9]+/, "") || "appliance";
}

async function _readVersionOrNull(repo: Repository, n: number | null): Promise<Version | null> {
  if (n === null) return null;
  try {
    return await repo.readVersion(n);
  } catch (err) {
    if (err instanceof NotFoundError) {
      throw new PermanentError(
        `the user disk's base, version ${n}, is gone from the repository (deleted by gc?); ` +
          `the user disk cannot be opened`,
        { cause: err },
      );
    }
    throw err;
  }
}

async function _removeIfThere(path: string): Promise<void> {
  await Deno.remove(path).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
}

function _withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new VatError(`no answer within ${ms} ms`)), ms);
    }),
  ]);
}
