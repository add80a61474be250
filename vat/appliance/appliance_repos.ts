/**
 * The appliances' repositories as the VAT opens them: through a `MirroredStore` (the
 * metadata mirrored under `STATE/mirror/ID/` for offline use, a busy server retried,
 * a silent one answered from the mirror at once) and, for an added appliance, held to
 * the pins `RepoTrust` keeps (docs/SECURITY.md).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { NotFoundError, PermanentError } from "../errors.ts";
import { openStore, redactLocation } from "../repo/open_store.ts";
import { Repository, type Version } from "../repo/repository.ts";
import { MirroredStore } from "../repo/store_mirrored.ts";
import type { RepoTrust } from "./repo_trust.ts";
import type { ApplianceRecord } from "./state_db.ts";

/** Opens appliance repositories for one VAT. */
export class ApplianceRepos {
  readonly #stateDir: string;
  readonly #trust: RepoTrust;

  constructor(stateDir: string, trust: RepoTrust) {
    this.#stateDir = stateDir;
    this.#trust = trust;
  }

  /** Runs `fn` on the repository at `location` (not held to any pins), then closes it. */
  async withRepo<T>(
    location: string,
    fn: (repo: Repository, store: MirroredStore) => Promise<T>,
  ): Promise<T> {
    const store = this.openStore(location);
    try {
      return await fn(await Repository.open(store, undefined, { keyLists: false }), store);
    } finally {
      await store.close();
    }
  }

  /**
   * `withRepo` for an added appliance: its repository held to the appliance's pins;
   * `problem` is what the trust checks found wrong, if anything.
   */
  async withTrusted<T>(
    record: ApplianceRecord,
    fn: (repo: Repository, store: MirroredStore, problem: string | null) => Promise<T>,
  ): Promise<T> {
    const store = this.openStore(record.repo);
    try {
      let problem: string | null = null;
      const repo = await this.openTrusted(record, store, (p) => problem = p);
      return await fn(repo, store, problem);
    } finally {
      await store.close();
    }
  }

  /**
   * Opens the repository of `record` held to its pins (`RepoTrust.apply`): the pinned
   * keys instead of repo.json's, the highest version accepted as the floor.
   */
  async openTrusted(
    record: ApplianceRecord,
    store: MirroredStore,
    onProblem?: (problem: string | null) => void,
  ): Promise<Repository> {
    const repo = await Repository.open(store, undefined, { keyLists: false });
    const problem = await this.#trust.apply(record.name, repo, !store.offline);
    if (problem) console.error(`${record.name}: ${problem}`);
    onProblem?.(problem);
    return repo;
  }

  /** The repository at `location`, its metadata mirrored under `mirror/` for offline use. */
  openStore(location: string): MirroredStore {
    const id = createHash("sha256").update(location).digest("hex").slice(0, 32);
    return new MirroredStore({
      location: redactLocation(location),
      // A server that does not answer is the mirror's business (it answers at once);
      // one that answers busy (429, 503) is retried with backoff (docs/FORMAT.md).
      open: () => openStore(location, { retry: { onlyAnswered: true } }),
      mirrorDir: `${this.#stateDir}/mirror/${id}`,
    });
  }
}

/** Version `n` of `repo` (null for none); a base that gc deleted says what that means. */
export async function readVersionOrNull(
  repo: Repository,
  n: number | null,
): Promise<Version | null> {
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
