/**
 * Hoarding (docs/DAEMON.md, "Hoarding and offline use"): an appliance kept for offline
 * use has every chunk of its newest version fetched and pinned (owner
 * `hoard:NAME:VERSION`); a newer version is fetched and pinned when it is seen, and
 * only then are the older version's pins dropped. A start without the repository is
 * allowed only when every chunk it needs is cached (`checkSafeOffline`).
 *
 * @module
 */

import type { ChunkCache } from "../cache/chunk_cache.ts";
import { PermanentError, TransientError } from "../errors.ts";
import { fetchPath } from "../fetch/fetch_path.ts";
import type { FetchScheduler } from "../fetch/fetch_scheduler.ts";
import { repositoryTransport } from "../fetch/transport.ts";
import { formatBytes, ProgressMeter } from "../progress.ts";
import type { Repository, Version } from "../repo/repository.ts";
import { redactLocation } from "../repo/open_store.ts";
import type { ApplianceOperations } from "./appliance_operations.ts";
import type { ApplianceRepos } from "./appliance_repos.ts";
import type { RepoTrust } from "./repo_trust.ts";
import type { ApplianceRecord, StateDb } from "./state_db.ts";
import type { VersionHoldings } from "./version_holdings.ts";

/** A hoard that failed in the background is not tried again sooner than this. */
const _HOARD_RETRY_MS = 60_000;
/** Chunk fetches a hoard keeps going at once. */
const _HOARD_WORKERS = 8;

/** What hoarding works with: the appliances' shared parts. */
export interface HoardsContext {
  db: StateDb;
  cache: ChunkCache;
  repos: ApplianceRepos;
  trust: RepoTrust;
  holdings: VersionHoldings;
  operations: ApplianceOperations;
  /** Orders repository traffic; a hoard runs at the prefetch level. */
  scheduler?: FetchScheduler;
  /** The appliances' last errors, by name ("hoarding failed: ..."). */
  errors: Map<string, string>;
  changed(): void;
}

/** The hoards of one VAT's appliances. */
export class Hoards {
  readonly #ctx: HoardsContext;
  readonly #running = new Map<string, Promise<void>>();
  readonly #progress = new Map<string, ProgressMeter>();
  readonly #failedAt = new Map<string, number>();

  constructor(ctx: HoardsContext) {
    this.#ctx = ctx;
  }

  /** Whether a hoard of `name` fetches now. */
  isRunning(name: string): boolean {
    return this.#running.has(name);
  }

  /** The running hoard's progress, if one runs. */
  progressOf(name: string): ProgressMeter | undefined {
    return this.#progress.get(name);
  }

  /** Whether a background hoard of `name` may start (none failed recently). */
  retryDue(name: string): boolean {
    return Date.now() - (this.#failedAt.get(name) ?? 0) > _HOARD_RETRY_MS;
  }

  /** Forgets a failure: the user asked again. */
  clearFailure(name: string): void {
    this.#failedAt.delete(name);
  }

  /** Drops every pin of `name` (unhoarded, or deleted). */
  unpinAll(name: string): void {
    for (const owner of this.#ctx.cache.pinOwners(`hoard:${name}:`)) this.#ctx.cache.unpin(owner);
    this.#ctx.holdings.changed();
  }

  /**
   * Keeps `name` for offline use (`on`: its newest version fetched and pinned; this
   * resolves when it is all cached), or stops keeping it (every pin dropped).
   */
  async set(name: string, on: boolean): Promise<void> {
    const { db, changed } = this.#ctx;
    db.get(name);
    if (on) {
      db.update(name, { hoarded: true });
      this.clearFailure(name);
      changed();
      await this.now(name);
    } else {
      db.update(name, { hoarded: false, hoardedVersion: null });
      this.unpinAll(name);
      changed();
    }
  }

  /** Runs (or joins) the hoard of `name`'s newest version. */
  now(name: string): Promise<void> {
    let running = this.#running.get(name);
    if (!running) {
      running = this.#hoardVersion(name).finally(() => {
        this.#running.delete(name);
        const meter = this.#progress.get(name);
        if (meter) this.#ctx.operations.untrack(name, meter);
        this.#progress.delete(name);
        this.#ctx.holdings.changed();
        this.#ctx.changed();
      });
      this.#running.set(name, running);
    }
    return running;
  }

  /** Starts a hoard of `name` unless one runs; a failure is logged and shown, not thrown. */
  inBackground(name: string): void {
    if (this.#running.has(name)) return;
    this.now(name).catch((err) => {
      this.#failedAt.set(name, Date.now());
      this.#ctx.errors.set(name, `hoarding failed: ${(err as Error).message}`);
      console.error(`hoard ${name}: ${(err as Error).message}`);
    });
  }

  /** Refuses an offline start of `version` unless every chunk it needs is cached. */
  async checkSafeOffline(record: ApplianceRecord, repo: Repository, version: Version) {
    const advice = `(hoard it while connected: vat hoard ${record.name})`;
    let holding;
    try {
      holding = await this.#ctx.holdings.holdingOf(record, repo, version, true);
    } catch (err) {
      throw new PermanentError(
        `"${record.name}" is not safe to use offline: its repository ${
          redactLocation(record.repo)
        } cannot ` +
          `be reached and version ${version.number} was never fetched here ${advice}`,
        { cause: err },
      );
    }
    const missing = holding.totalBytes - holding.cachedBytes;
    if (missing > 0) {
      throw new PermanentError(
        `"${record.name}" is not safe to use offline: ${formatBytes(missing)} of version ` +
          `${version.number} is not cached ${advice}`,
      );
    }
  }

  async #hoardVersion(name: string): Promise<void> {
    const { db, cache, repos, trust, holdings, operations, errors } = this.#ctx;
    const record = db.get(name);
    await repos.withTrusted(record, async (repo, store) => {
      const version = await repo.resolveVersion("latest");
      if (store.offline) {
        throw new TransientError(
          `cannot hoard "${name}": its repository ${redactLocation(record.repo)} cannot be reached`,
        );
      }
      trust.accept(name, version);
      const chunks = await holdings.chunksOf(record, repo, version);
      const owner = `hoard:${name}:${version.number}`;
      // Pinned first, so nothing fetched below is evicted before the end.
      cache.pin(owner, chunks.hashes);
      const missing: number[] = [];
      let doneBytes = 0;
      for (let i = 0; i < chunks.hashes.length; i++) {
        if (cache.has(chunks.hashes[i])) doneBytes += chunks.lengths[i];
        else missing.push(i);
      }
      const progress = new ProgressMeter("hoard", chunks.totalBytes, doneBytes);
      this.#progress.set(name, progress);
      operations.track(name, progress);
      // At the prefetcher's level (not its adaptive rate: the user asked for this), so
      // a running guest's demand reads and trace replay go first.
      const source = fetchPath({
        cache,
        scheduler: this.#ctx.scheduler,
        priority: "prefetch",
        transport: repositoryTransport(repo),
      });
      let lastEvent = Date.now();
      let next = 0;
      const worker = async () => {
        while (next < missing.length) {
          const i = missing[next++];
          await source.load(chunks.hashes[i]);
          progress.advance(chunks.lengths[i]);
          if (Date.now() - lastEvent > 500) {
            lastEvent = Date.now();
            this.#ctx.changed();
          }
        }
      };
      await Promise.all(Array.from({ length: _HOARD_WORKERS }, worker));
      if (!db.get(name).hoarded) {
        // Unhoarded while this ran.
        cache.unpin(owner);
        return;
      }
      // The new version is safe offline: only now do the older versions' pins go.
      for (const other of cache.pinOwners(`hoard:${name}:`)) {
        if (other !== owner) cache.unpin(other);
      }
      db.update(name, { hoardedVersion: version.number });
      this.#failedAt.delete(name);
      if (errors.get(name)?.startsWith("hoarding failed")) errors.delete(name);
    });
  }
}
