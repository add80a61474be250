/**
 * What a VAT holds each appliance's repository to (docs/SECURITY.md): the repository
 * id and publisher keys pinned when the appliance was added (from the administrator,
 * or on first use), changed only by key lists signed by a pinned key; the highest
 * version accepted, below which a newest version is a rollback; the newest version
 * marked update required, below which nothing boots; and the newest freshness
 * statement seen, whose expiry while online means the repository may be frozen.
 * Kept in the state database, so a restart forgets none of it.
 *
 * @module
 */

import { describeKey, keyFingerprint } from "../auth/signing_key.ts";
import { IntegrityError, PermanentError } from "../errors.ts";
import { checkFreshness } from "../repo/freshness.ts";
import { followKeyLists } from "../repo/key_list.ts";
import type { Repository, Version } from "../repo/repository.ts";
import type { StateDb, TrustRecord } from "./state_db.ts";

/** What the API shows of an appliance's trust. */
export interface TrustStatus {
  repoId: string;
  keys: { id: string; fingerprint: string }[];
  keySequence: number;
  pinnedBy: TrustRecord["pinnedBy"];
  highestVersion: number | null;
  requiredVersion: number | null;
  /** The newest freshness statement seen: the version vouched for, and until when. */
  vouchedVersion: number | null;
  vouchedAt: string | null;
  vouchedUntil: string | null;
  /**
   * What is wrong now: a version or key list signed by a key this VAT does not trust,
   * a rollback, a withheld version, a stale freshness statement; null when nothing.
   */
  problem: string | null;
}

/** Pins and checks the repositories of a VAT's appliances. */
export class RepoTrust {
  readonly #db: StateDb;

  constructor(db: StateDb) {
    this.#db = db;
  }

  /**
   * What to pin for the repository `repo` when an appliance is added: the keys of
   * `publishers` (an administrator's), or on first use the repository's own (its
   * signed key lists followed from `repo.json`'s keys). Its newest version must verify
   * with them, so a wrong `--publisher` fails here.
   */
  async pin(repo: Repository, publishers: string[] | null): Promise<Omit<TrustRecord, "name">> {
    const firstUse = publishers === null;
    const from = {
      sequence: 0,
      keys: firstUse ? [...repo.config.publisherKeys] : publishers,
      retired: [],
    };
    const { pins, problem } = await followKeyLists(
      repo.store,
      repo.config.id,
      from,
      firstUse ? "first-use" : "administrator",
    );
    if (problem) throw new IntegrityError(problem);
    if (pins.keys.length === 0) {
      throw new PermanentError(`${repo.store.location} names no publisher key: nothing to trust`);
    }
    repo.policy = { keys: pins.keys, retired: pins.retired };
    const latest = await repo.resolveVersion("latest");
    return {
      repoId: repo.config.id,
      keySequence: pins.sequence,
      keys: pins.keys,
      retired: pins.retired,
      pinnedBy: firstUse ? "first use" : "administrator",
      pinnedAt: new Date().toISOString(),
      highestVersion: latest.number,
      highestAt: new Date().toISOString(),
      requiredVersion: latest.manifest.updateRequired ? latest.number : null,
      vouched: null,
    };
  }

  /**
   * Holds `repo` to appliance `name`'s pins: the same repository id, the pinned keys
   * (after following key lists signed by them, when `online`), the highest version
   * accepted as the floor. Returns why a key list was not followed (null: all were).
   * An appliance added before pins existed is pinned now, on first use.
   */
  async apply(name: string, repo: Repository, online: boolean): Promise<string | null> {
    let record = this.#db.trust(name);
    if (!record) {
      record = { ...(await this.pin(repo, null)), name };
      this.#db.setTrust(record);
      console.error(
        `${name}: pinned ${repo.store.location} (id ${record.repoId}) on first use: ` +
          record.keys.map(describeKey).join(", "),
      );
    }
    if (repo.config.id !== record.repoId) {
      throw new IntegrityError(
        `${repo.store.location} is no longer the repository "${name}" was added from ` +
          `(its id is ${repo.config.id}, this VAT pinned ${record.repoId}): refused, nothing ` +
          `was changed (delete and add the appliance again if the move was intended)`,
      );
    }
    let problem: string | null = null;
    if (online) {
      const followed = await followKeyLists(repo.store, record.repoId, {
        sequence: record.keySequence,
        keys: record.keys,
        retired: record.retired,
      });
      problem = followed.problem;
      if (followed.pins.sequence !== record.keySequence) {
        record = {
          ...record,
          keySequence: followed.pins.sequence,
          keys: followed.pins.keys,
          retired: followed.pins.retired,
        };
        this.#db.setTrust(record);
        console.error(
          `${name}: key list ${record.keySequence} of ${repo.store.location}, signed by a ` +
            `pinned key, makes the publisher keys ${record.keys.map(describeKey).join(", ")}`,
        );
      }
    }
    repo.policy = { keys: record.keys, retired: record.retired, floor: record.highestVersion };
    return problem;
  }

  /** Throws unless `version` may boot: none newer is marked update required. */
  checkRequired(name: string, version: Version): void {
    const required = this.#db.trust(name)?.requiredVersion ?? null;
    if (required !== null && version.number < required) {
      throw new PermanentError(
        `version ${version.number} of "${name}" may not start: version ${required}, which ` +
          `this VAT has seen, is marked update required (connect to the repository to fetch it)`,
      );
    }
  }

  /** Records that `version` (verified) was accepted: it raises the floor. */
  accept(name: string, version: Version): void {
    const record = this.#db.trust(name);
    if (!record) return;
    let changed = false;
    if (record.highestVersion === null || version.number > record.highestVersion) {
      record.highestVersion = version.number;
      record.highestAt = new Date().toISOString();
      changed = true;
    }
    if (version.manifest.updateRequired && version.number > (record.requiredVersion ?? 0)) {
      record.requiredVersion = version.number;
      changed = true;
    }
    if (changed) this.#db.setTrust(record);
  }

  /**
   * Reads the repository's freshness statement (call only while online) and says what
   * is wrong with the repository's freshness: a statement that is not signed by a
   * trusted key, a newest version it withholds, or no statement newer than one that
   * expired. Null when fine, or when the repository never made a statement.
   */
  async freshness(name: string, repo: Repository, offered: number | null): Promise<string | null> {
    const record = this.#db.trust(name);
    if (!record) return null;
    return await checkFreshness(
      repo,
      { repoId: record.repoId, trustedKeys: repo.trustedKeys() },
      offered,
      {
        load: () => Promise.resolve(record.vouched ?? null),
        save: (vouched) => Promise.resolve(this.#db.setTrust({ ...record, vouched })),
      },
    );
  }

  /** What the API shows; `problem` is the latest lookup's. */
  status(name: string, problem: string | null): TrustStatus | null {
    const r = this.#db.trust(name);
    if (!r) return null;
    return {
      repoId: r.repoId,
      keys: r.keys.map((id) => ({ id, fingerprint: keyFingerprint(id) })),
      keySequence: r.keySequence,
      pinnedBy: r.pinnedBy,
      highestVersion: r.highestVersion,
      requiredVersion: r.requiredVersion,
      vouchedVersion: r.vouched?.latest ?? null,
      vouchedAt: r.vouched?.signedAt ?? null,
      vouchedUntil: r.vouched?.expires ?? null,
      problem,
    };
  }
}
