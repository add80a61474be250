/**
 * The appliances as the background prefetcher sees them (docs/CACHE.md,
 * "Prefetching"): every added appliance, whether it ever ran or not (as the paper's
 * prefetcher, so that a first start finds its blocks cached). Each opens its newest
 * version (null while its repository cannot be reached) and shows a prefetch in the
 * appliance's `operations`; the user disk prefetched is the one a start would read.
 *
 * @module
 */

import type { PrefetchTarget } from "../prefetch/prefetcher.ts";
import type { Repository, Version } from "../repo/repository.ts";
import type { ApplianceBackups } from "./appliance_backups.ts";
import type { ApplianceOperations } from "./appliance_operations.ts";
import { type ApplianceRepos, readVersionOrNull } from "./appliance_repos.ts";
import type { RepoTrust } from "./repo_trust.ts";
import type { ApplianceRecord, StateDb } from "./state_db.ts";
import type { VersionHoldings } from "./version_holdings.ts";

/** What the targets are made from. */
export interface PrefetchTargetsContext {
  db: StateDb;
  repos: ApplianceRepos;
  trust: RepoTrust;
  /** The appliances' backups; null without a data repository. */
  backups: ApplianceBackups | null;
  operations: ApplianceOperations;
  holdings: VersionHoldings;
}

/** One target per added appliance. */
export function prefetchTargetsOf(ctx: PrefetchTargetsContext): PrefetchTarget[] {
  const { db, repos, trust, operations, holdings } = ctx;
  return db.list().map((record) => ({
    name: record.name,
    open: async () => {
      const store = repos.openStore(record.repo);
      try {
        const repo = await repos.openTrusted(record, store);
        const version = await repo.resolveVersion("latest");
        if (store.offline) {
          await store.close();
          return null;
        }
        trust.accept(record.name, version);
        const userBase = await _prefetchedUserBase(ctx, record, repo, version);
        return { repo, version, userBase, close: () => store.close() };
      } catch (err) {
        await store.close();
        throw err;
      }
    },
    track: (meter) => operations.track(record.name, meter),
    untrack: (meter) => {
      holdings.changed();
      operations.untrack(record.name, meter);
    },
  }));
}

/**
 * The version whose initial user disk a start of `version` reads; null when the user
 * disk comes from the data repository instead (restored there, or maybe so at a first
 * start: a fresh VAT restores the newest backup), which is not worth prefetching from
 * the appliance's repository.
 */
async function _prefetchedUserBase(
  ctx: PrefetchTargetsContext,
  record: ApplianceRecord,
  repo: Repository,
  version: Version,
): Promise<Version | null> {
  if (await ctx.backups?.userDiskFromDataRepo(record)) return null;
  return await readVersionOrNull(repo, record.userBaseVersion ?? version.number);
}
