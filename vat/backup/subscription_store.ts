/**
 * One subscription's view of a data repository (docs/FORMAT.md, "Data repositories"):
 * a `Store` wrapper under which a `Repository` sees an ordinary repository whose
 * versions are that subscription's user-disk versions. `repo.json`, `chunks/` and
 * `activity/` are the data repository's own, shared by every subscription (so a fork
 * or an undo stores no chunk twice); every other key lives under
 * `subscriptions/<name>/`.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import type { ObjectInfo, ReadOptions, Store } from "../repo/store.ts";

/** Keys shared by all subscriptions. */
const SHARED = /^(repo\.json$|chunks\/|activity\/)/;

/** Subscription names: what an appliance name allows, plus a fork's suffix. */
const NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/;

/** The key prefix of subscription `name`. */
export function subscriptionPrefix(name: string): string {
  if (!NAME.test(name)) throw new UsageError(`"${name}" cannot name a subscription`);
  return `subscriptions/${name}/`;
}

/** `root` as subscription `name` sees it. */
export class SubscriptionStore implements Store {
  readonly location: string;
  readonly canList: boolean;
  readonly #root: Store;
  readonly #prefix: string;

  constructor(root: Store, name: string) {
    this.#root = root;
    this.#prefix = subscriptionPrefix(name);
    this.location = `${root.location} (subscription ${name})`;
    this.canList = root.canList;
  }

  #key(key: string): string {
    return SHARED.test(key) ? key : this.#prefix + key;
  }

  get(key: string, options?: ReadOptions): Promise<Uint8Array> {
    return this.#root.get(this.#key(key), options);
  }

  getRange(
    key: string,
    offset: number,
    length: number,
    options?: Pick<ReadOptions, "signal">,
  ): Promise<Uint8Array> {
    return this.#root.getRange(this.#key(key), offset, length, options);
  }

  put(key: string, data: Uint8Array): Promise<void> {
    return this.#root.put(this.#key(key), data);
  }

  create(key: string, data: Uint8Array): Promise<boolean> {
    return this.#root.create(this.#key(key), data);
  }

  stat(key: string): Promise<ObjectInfo | null> {
    return this.#root.stat(this.#key(key));
  }

  async *list(prefix: string): AsyncIterable<string> {
    const mapped = this.#key(prefix);
    const strip = mapped === prefix ? 0 : this.#prefix.length;
    for await (const key of this.#root.list(mapped)) yield key.slice(strip);
  }

  delete(key: string): Promise<void> {
    return this.#root.delete(this.#key(key));
  }

  /** The root store is the data repository's; whoever opened it closes it. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
