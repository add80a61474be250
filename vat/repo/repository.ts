/**
 * A repository over any `Store`: its config, its versions, disk indexes and chunks,
 * each read verified (docs/FORMAT.md). Finding `latest`, listing versions and opening
 * a version never list `chunks/`.
 *
 * @module
 */

import { randomUUID } from "node:crypto";
import { ConflictError, IntegrityError, NotFoundError, PermanentError } from "../errors.ts";
import { chunkKey, fromHex, toHex } from "./chunk_codec.ts";
import { DiskIndex } from "./disk_index.ts";
import { type ObjectCodec, PLAIN_CODEC } from "./object_codec.ts";
import { type ObjectRef, openManifest, type VersionManifest } from "./manifest.ts";
import { parseRepoConfig, type RepoConfig, type RepoKind } from "./repo_config.ts";
import { CHUNK_OVERHEAD_BYTES, type Store } from "./store.ts";
import { followKeyLists } from "./key_list.ts";

/**
 * Reads of a chunk before it is reported corrupt. Three: a link that damages one body
 * in a hundred then reports a good chunk corrupt once in a million reads.
 */
const CHUNK_READ_ATTEMPTS = 3;

/** Object keys of the layout. */
export const REPO_JSON = "repo.json";
export const LATEST = "latest";
export const manifestKey = (version: number) => `versions/${version}/manifest.json`;

/** Largest index object a reader accepts (a 64 TiB disk at 4 KiB chunks would be more). */
const MAX_INDEX_BYTES = 512 * 1024 * 1024;

/** How many committed versions past `latest` a reader looks for before it gives up. */
const MAX_VERSIONS_PAST_LATEST = 100;

/** Options for `Repository.init`. */
export interface InitOptions {
  kind: RepoKind;
  chunkSizeBytes: number;
  publisherKeys?: string[];
}

/**
 * What a reader holds a repository to beyond what the repository says of itself
 * (docs/SECURITY.md): a VAT's pinned keys instead of `repo.json`'s, the highest
 * version it accepted, and in a data repository the series a manifest must name.
 */
export interface ReadPolicy {
  /** Keys whose signatures make a version valid, in place of `repo.json`'s `publisherKeys`. */
  keys?: readonly string[];
  /**
   * Keys a signed key list retired, each still valid for the versions up to `upTo`
   * (those accepted while it was trusted, such as a subscription's user-disk base).
   */
  retired?: readonly { key: string; upTo: number }[];
  /** The highest version accepted before: a newest version below it is a rollback. */
  floor?: number | null;
  /** A data repository's series: every manifest must name it in `subscription`. */
  subscription?: string;
}

/** A committed version: its number and its verified manifest. */
export interface Version {
  number: number;
  manifest: VersionManifest;
}

/** A chunk as read from the repository: its verified plain bytes and its stored size. */
export interface StoredChunk {
  plain: Uint8Array;
  /** The stored (compressed, maybe sealed) object's size: what crossed the link. */
  storedBytes: number;
}

/** A repository opened on a store. */
export class Repository {
  readonly store: Store;
  config: RepoConfig;
  /** How objects are named and stored: plain, or sealed in a data repository. */
  readonly codec: ObjectCodec;
  /** What reads are held to; empty: `repo.json`'s keys, no floor. */
  policy: ReadPolicy = {};

  constructor(store: Store, config: RepoConfig, codec: ObjectCodec = PLAIN_CODEC) {
    this.store = store;
    this.config = config;
    this.codec = codec;
  }

  /** Creates a repository; throws `ConflictError` if one is already there. */
  static async init(
    store: Store,
    options: InitOptions,
    codec: ObjectCodec = PLAIN_CODEC,
  ): Promise<Repository> {
    const config: RepoConfig = {
      format: 1,
      id: randomUUID(),
      kind: options.kind,
      chunkSizeBytes: options.chunkSizeBytes,
      hash: "sha256",
      compression: "zstd",
      publisherKeys: options.publisherKeys ?? [],
      createdAt: new Date().toISOString(),
    };
    parseRepoConfig(new TextEncoder().encode(JSON.stringify(config)), store.location);
    const created = await store.create(REPO_JSON, _json(config));
    if (!created) {
      throw new ConflictError(`${store.location} already holds a vat repository`);
    }
    return new Repository(store, config, codec);
  }

  /**
   * Opens the repository in `store`; `NotFoundError` if there is none. Its versions
   * are checked against the keys of its newest signed key list (and the keys earlier
   * lists retired, for the versions they signed) when it has key lists, otherwise
   * against `repo.json`'s; `keyLists: false` skips reading them (a VAT applies its
   * own pins instead).
   */
  static async open(
    store: Store,
    codec: ObjectCodec = PLAIN_CODEC,
    options: { keyLists?: boolean } = {},
  ): Promise<Repository> {
    let bytes: Uint8Array;
    try {
      bytes = await store.get(REPO_JSON);
    } catch (err) {
      if (err instanceof NotFoundError) {
        throw new NotFoundError(
          `no vat repository at ${store.location} (create one with: vat repo init ${store.location} --kind appliance)`,
          { cause: err },
        );
      }
      throw err;
    }
    const repo = new Repository(store, parseRepoConfig(bytes, store.location), codec);
    if (
      options.keyLists !== false && repo.config.kind !== "data" && repo.config.kind !== "directory"
    ) {
      // A broken chain leaves the keys as far as it holds; `vat repo verify` reports it.
      const { pins } = await followKeyLists(store, repo.config.id, {
        sequence: 0,
        keys: [...repo.config.publisherKeys],
        retired: [],
      }, "first-use");
      if (pins.sequence > 0) repo.policy = { keys: pins.keys, retired: pins.retired };
    }
    return repo;
  }

  /**
   * Rewrites repo.json's `publisherKeys` (after a signed key list changed them: VATs
   * follow the list, publishers and vat serve read repo.json).
   */
  async setPublisherKeys(keys: string[]): Promise<void> {
    const fresh = parseRepoConfig(await this.store.get(REPO_JSON), this.store.location);
    fresh.publisherKeys = [...keys];
    await this.store.put(REPO_JSON, _json(fresh));
    this.config = fresh;
  }

  /** Adds a publisher key to repo.json (idempotent). */
  async addPublisherKey(keyId: string): Promise<void> {
    if (this.config.publisherKeys.includes(keyId)) return;
    const fresh = parseRepoConfig(await this.store.get(REPO_JSON), this.store.location);
    if (!fresh.publisherKeys.includes(keyId)) fresh.publisherKeys.push(keyId);
    await this.store.put(REPO_JSON, _json(fresh));
    this.config = fresh;
  }

  /**
   * The newest committed version, or null when there is none. `latest` is a hint
   * written after each commit; a publisher killed between its commit and that write
   * leaves it behind, so the versions after it are probed.
   */
  async latestVersion(): Promise<number | null> {
    const n = await this.#findLatest();
    const floor = this.policy.floor ?? 0;
    if ((n ?? 0) < floor) {
      throw new IntegrityError(
        `${this.store.location} offers ${n === null ? "no version" : `version ${n}`} as its ` +
          `newest, but this VAT already accepted version ${floor}: a rollback (an old copy of ` +
          `the repository, or a server hiding newer versions); refused, nothing was changed`,
      );
    }
    return n;
  }

  async #findLatest(): Promise<number | null> {
    const n = await this.#probeLatest();
    if (n === 0) return null;
    if (await this.store.stat(manifestKey(n))) return n;
    // The hint names a version that is gone (deleted by hand): list what is left.
    const all = await this.listVersions();
    return all.length ? all[all.length - 1] : null;
  }

  /** The keys whose signatures make a version valid here (and for version `n`, if given). */
  trustedKeys(n?: number): readonly string[] {
    const keys = this.policy.keys ?? this.config.publisherKeys;
    const retired = (this.policy.retired ?? []).filter((r) => n !== undefined && n <= r.upTo);
    return retired.length ? [...keys, ...retired.map((r) => r.key)] : keys;
  }

  /** Every committed version number, ascending. */
  async listVersions(): Promise<number[]> {
    if (this.store.canList) {
      const found: number[] = [];
      for await (const key of this.store.list("versions/")) {
        const m = /^versions\/(\d{1,9})\/manifest\.json$/.exec(key);
        if (m) found.push(Number(m[1]));
      }
      return found.sort((a, b) => a - b);
    }
    // A static HTTP server cannot list: walk down from the newest version. gc keeps
    // the newest versions, so the committed ones are contiguous.
    const found: number[] = [];
    for (let n = await this.#probeLatest(); n > 0 && await this.store.stat(manifestKey(n)); n--) {
      found.unshift(n);
    }
    return found;
  }

  /** The `latest` hint (0 when absent), advanced past any versions committed after it. */
  async #probeLatest(): Promise<number> {
    let n = 0;
    try {
      const text = new TextDecoder().decode(await this.store.get(LATEST)).trim();
      if (!/^\d{1,9}$/.test(text)) {
        throw new IntegrityError(`"latest" of ${this.store.location} is not a version number`);
      }
      n = Number(text);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    // A publisher killed between its commit and this hint leaves it a version or two
    // behind; a server claiming endless versions after it is not followed forever.
    for (let ahead = 0; await this.store.stat(manifestKey(n + 1)); ahead++) {
      if (ahead >= MAX_VERSIONS_PAST_LATEST) {
        throw new IntegrityError(
          `${this.store.location} claims more than ${MAX_VERSIONS_PAST_LATEST} versions after ` +
            `its "latest" (${n - ahead}); the repository is damaged or its server is hostile`,
        );
      }
      n++;
    }
    return n;
  }

  /** Reads and verifies version `n`; `NotFoundError` if it is not committed. */
  async readVersion(n: number): Promise<Version> {
    let bytes: Uint8Array;
    try {
      bytes = await this.store.get(manifestKey(n));
    } catch (err) {
      if (err instanceof NotFoundError) {
        throw new NotFoundError(`version ${n} does not exist in ${this.store.location}`, {
          cause: err,
        });
      }
      throw err;
    }
    const manifest = openManifest(bytes, {
      repoId: this.config.id,
      version: n,
      trustedKeys: this.trustedKeys(n),
      subscription: this.policy.subscription,
    });
    return { number: n, manifest };
  }

  /** Resolves "latest" or a number to a committed version. */
  async resolveVersion(which: number | "latest"): Promise<Version> {
    if (which !== "latest") return await this.readVersion(which);
    const n = await this.latestVersion();
    if (n === null) {
      throw new NotFoundError(`${this.store.location} has no versions yet (publish one first)`);
    }
    return await this.readVersion(n);
  }

  /** Reads a disk index and checks it against the manifest's hash. */
  async readDiskIndex(ref: ObjectRef): Promise<DiskIndex> {
    _checkIndexRef(ref);
    // The manifest says how big the stored object is: not a byte more is read.
    return this.decodeDiskIndex(ref, await this.store.get(ref.key, { maxBytes: ref.sizeBytes }));
  }

  /**
   * Checks a disk index's stored object (read from the store, or kept from an earlier
   * read) against the manifest's hash, and parses it.
   */
  decodeDiskIndex(ref: ObjectRef, object: Uint8Array): DiskIndex {
    _checkIndexRef(ref);
    const what = `disk index ${ref.key}`;
    let plain: Uint8Array;
    try {
      plain = this.codec.decode(object, fromHex(ref.sha256), what, MAX_INDEX_BYTES);
    } catch (err) {
      if (!(err instanceof IntegrityError)) throw err;
      throw new IntegrityError(
        `${what} does not match its manifest (corrupt or tampered): ${err.message}`,
        { cause: err },
      );
    }
    return DiskIndex.fromBytes(plain, what);
  }

  /** Stores a disk index under `versions/N/`; returns the manifest's reference. */
  async writeDiskIndex(version: number, name: string, index: DiskIndex): Promise<ObjectRef> {
    const plain = index.toBytes();
    const hash = this.codec.nameOf(plain);
    const sha256 = toHex(hash);
    const key = `versions/${version}/${name}.${sha256.slice(0, 16)}.idx`;
    const object = await this.codec.encode(plain, hash);
    await this.store.put(key, object);
    return { key, sha256, sizeBytes: object.length };
  }

  /**
   * Reads chunk `hash` and verifies it; `IntegrityError` if it does not check out,
   * `NotFoundError` if the repository lacks it.
   */
  async readChunk(hash: Uint8Array): Promise<Uint8Array> {
    return (await this.readStoredChunk(hash)).plain;
  }

  /**
   * `readChunk`, also saying how big the stored object was (the bytes that crossed the
   * link). A chunk that fails its check is read again, up to `CHUNK_READ_ATTEMPTS`
   * times in all: a body damaged or cut short on the way is cured by that, one damaged
   * in the store is then reported (`IntegrityError`, saying how often it was read).
   */
  async readStoredChunk(hash: Uint8Array): Promise<StoredChunk> {
    const id = toHex(hash);
    for (let attempt = 1;; attempt++) {
      let object: Uint8Array;
      try {
        object = await this.store.get(chunkKey(id), {
          maxBytes: this.config.chunkSizeBytes + CHUNK_OVERHEAD_BYTES,
        });
      } catch (err) {
        if (err instanceof NotFoundError) {
          throw new NotFoundError(
            `chunk ${id} is missing from ${this.store.location} (the repository is damaged; run vat repo verify)`,
            { cause: err },
          );
        }
        throw err;
      }
      try {
        const plain = this.codec.decode(
          object,
          hash,
          `chunk ${id} in ${this.store.location}`,
          this.config.chunkSizeBytes,
        );
        return { plain, storedBytes: object.length };
      } catch (err) {
        if (!(err instanceof IntegrityError)) throw err;
        if (attempt >= CHUNK_READ_ATTEMPTS) {
          throw new IntegrityError(`${err.message} (read ${attempt} times)`, { cause: err });
        }
        console.error(
          `repository: chunk ${id} in ${this.store.location} failed its check; reading it ` +
            `again (${attempt + 1} of ${CHUNK_READ_ATTEMPTS})`,
        );
      }
    }
  }

  /**
   * Encodes and stores a chunk; returns the stored object's size. Its durability is
   * deferred to the store's next `create` (the commit of the version that names it):
   * the file store syncs such chunks in batches, not one fsync each.
   */
  async writeChunk(hash: Uint8Array, plain: Uint8Array): Promise<number> {
    const object = await this.codec.encode(plain, hash);
    await this.store.put(chunkKey(toHex(hash)), object, { deferSync: true });
    return object.length;
  }

  /**
   * Stores chunk object `object` of chunk `hash`, already encoded with this repository's
   * codec (a backup's outbox seals chunks when it snapshots, then uploads them later).
   */
  async writeEncodedChunk(hash: Uint8Array, object: Uint8Array): Promise<void> {
    await this.store.put(chunkKey(toHex(hash)), object);
  }

  /** Whether the store holds chunk `hash` (it is not read or checked). */
  async hasChunk(hash: Uint8Array): Promise<boolean> {
    return (await this.store.stat(chunkKey(toHex(hash)))) !== null;
  }

  /** Writes the `latest` hint, never lowering it. */
  async writeLatest(version: number): Promise<void> {
    const current = await this.latestVersion().catch(() => null);
    if (current !== null && current > version) return;
    await this.store.put(LATEST, new TextEncoder().encode(`${version}\n`));
  }

  /** Throws unless `keyId` may publish here. */
  checkPublisher(keyId: string): void {
    if (!this.config.publisherKeys.includes(keyId)) {
      throw new PermanentError(
        `key ${keyId} is not a publisher of ${this.store.location}; ` +
          `a current publisher adds it with: vat repo add-key ${this.store.location} ${keyId} --key KEY`,
      );
    }
  }
}

/** Throws unless a manifest's index reference gives a size an index may have. */
function _checkIndexRef(ref: ObjectRef): void {
  if (
    !Number.isSafeInteger(ref.sizeBytes) || ref.sizeBytes < 0 || ref.sizeBytes > MAX_INDEX_BYTES
  ) {
    throw new IntegrityError(
      `disk index ${ref.key}: its manifest gives a size of ${ref.sizeBytes} bytes`,
    );
  }
}

function _json(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n");
}
