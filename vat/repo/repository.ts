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

  /** Opens the repository in `store`; `NotFoundError` if there is none. */
  static async open(store: Store, codec: ObjectCodec = PLAIN_CODEC): Promise<Repository> {
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
    return new Repository(store, parseRepoConfig(bytes, store.location), codec);
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
    const n = await this.#probeLatest();
    if (n === 0) return null;
    if (await this.store.stat(manifestKey(n))) return n;
    // The hint names a version that is gone (deleted by hand): list what is left.
    const all = await this.listVersions();
    return all.length ? all[all.length - 1] : null;
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
      trustedKeys: this.config.publisherKeys,
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
    const what = `disk index ${ref.key}`;
    if (
      !Number.isSafeInteger(ref.sizeBytes) || ref.sizeBytes < 0 || ref.sizeBytes > MAX_INDEX_BYTES
    ) {
      throw new IntegrityError(`${what}: its manifest gives a size of ${ref.sizeBytes} bytes`);
    }
    // The manifest says how big the stored object is: not a byte more is read.
    const object = await this.store.get(ref.key, { maxBytes: ref.sizeBytes });
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

  /** `readChunk`, also saying how big the stored object was (the bytes that crossed the link). */
  async readStoredChunk(hash: Uint8Array): Promise<StoredChunk> {
    const id = toHex(hash);
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
    const plain = this.codec.decode(
      object,
      hash,
      `chunk ${id} in ${this.store.location}`,
      this.config.chunkSizeBytes,
    );
    return { plain, storedBytes: object.length };
  }

  /** Encodes and stores a chunk; returns the stored object's size. */
  async writeChunk(hash: Uint8Array, plain: Uint8Array): Promise<number> {
    const object = await this.codec.encode(plain, hash);
    await this.store.put(chunkKey(toHex(hash)), object);
    return object.length;
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
          `add it with: vat repo add-key ${this.store.location} ${keyId}`,
      );
    }
  }
}

function _json(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n");
}
