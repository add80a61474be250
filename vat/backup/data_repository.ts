/**
 * A user's data repository (docs/FORMAT.md, "Data repositories"): an ordinary vat
 * repository of kind `data` whose objects are sealed with the user's key, holding one
 * version series per subscription (`SubscriptionStore`). Opening one with the wrong
 * key fails before anything is read or written: the repository's one publisher key is
 * the user key's signing key.
 *
 * @module
 */

import type { UserKey } from "../auth/user_key.ts";
import { ConflictError, NotFoundError, PermanentError } from "../errors.ts";
import { openStore } from "../repo/open_store.ts";
import { DEFAULT_CHUNK_BYTES } from "../repo/repo_config.ts";
import { Repository } from "../repo/repository.ts";
import type { Store } from "../repo/store.ts";
import { sealedCodec } from "./sealed_codec.ts";
import { SubscriptionStore } from "./subscription_store.ts";

/** Options of `DataRepository.open`. */
export interface OpenDataOptions {
  /** Create the repository when the location holds none. */
  create?: boolean;
}

/** A data repository opened with its user's key. */
export class DataRepository {
  readonly store: Store;
  readonly key: UserKey;
  readonly root: Repository;

  private constructor(store: Store, key: UserKey, root: Repository) {
    this.store = store;
    this.key = key;
    this.root = root;
  }

  /** Opens (or with `create`, makes) the data repository in `store` with `key`. */
  static async open(
    store: Store,
    key: UserKey,
    options: OpenDataOptions = {},
  ): Promise<DataRepository> {
    const codec = sealedCodec(key);
    let root: Repository;
    try {
      root = await Repository.open(store, codec);
    } catch (err) {
      if (!(err instanceof NotFoundError) || !options.create) throw err;
      try {
        root = await Repository.init(store, {
          kind: "data",
          chunkSizeBytes: DEFAULT_CHUNK_BYTES,
          publisherKeys: [key.signingKey.publicKeyId],
        }, codec);
      } catch (raced) {
        if (!(raced instanceof ConflictError)) throw raced;
        root = await Repository.open(store, codec);
      }
    }
    _checkKey(root, key, store);
    root.policy = { keys: [key.signingKey.publicKeyId] };
    return new DataRepository(store, key, root);
  }

  /**
   * The version series of subscription `name`, as a repository whose versions count
   * only when signed by the user's own key (whatever `repo.json` lists) and bound to
   * this series (their `subscription` field), so a storage operator can neither add
   * versions nor copy one series' version into another (docs/SECURITY.md).
   */
  subscription(name: string): Repository {
    const repo = new Repository(
      new SubscriptionStore(this.store, name),
      this.root.config,
      this.root.codec,
    );
    repo.policy = { keys: [this.key.signingKey.publicKeyId], subscription: name };
    return repo;
  }

  /** Names of the subscriptions with at least one object (stores that can list). */
  async listSubscriptions(): Promise<string[]> {
    const names = new Set<string>();
    for await (const key of this.store.list("subscriptions/")) {
      const m = /^subscriptions\/([^/]+)\//.exec(key);
      if (m) names.add(m[1]);
    }
    return [...names].sort();
  }

  close(): Promise<void> {
    return this.store.close();
  }
}

/** Opens the data repository at `location` with `key`. */
export async function openDataRepository(
  location: string,
  key: UserKey,
  options: OpenDataOptions = {},
): Promise<DataRepository> {
  const store = await openStore(location, { signingKey: key.signingKey });
  try {
    return await DataRepository.open(store, key, options);
  } catch (err) {
    await store.close();
    throw err;
  }
}

/** Throws unless `root` is a data repository that `key` opens. */
function _checkKey(root: Repository, key: UserKey, store: Store): void {
  if (root.config.kind !== "data") {
    throw new PermanentError(
      `${store.location} is an ${root.config.kind} repository, not a data repository`,
    );
  }
  if (!root.config.publisherKeys.includes(key.signingKey.publicKeyId)) {
    throw new PermanentError(
      `the user key ${key.path} does not open the data repository ${store.location}: ` +
        `it belongs to another key (${root.config.publisherKeys.join(", ")}); ` +
        `use the key it was made with`,
    );
  }
}
