/**
 * `publishVersion`: disk images become version N+1 of a repository (docs/FORMAT.md,
 * "Publishing"). Chunks the repository already has are not uploaded; every object of
 * the version is written before its manifest is created, and that conditional create
 * is the commit, so a reader never sees half a version and a killed publish leaves
 * only unreferenced objects behind.
 *
 * @module
 */

import { ConflictError, PermanentError, UsageError } from "../errors.ts";
import type { SigningKey } from "../auth/signing_key.ts";
import { openPlainFile, openRawImage, type RawImage } from "../image/raw_image.ts";
import { type ByteRange, coversFully, zeroRanges } from "../image/byte_ranges.ts";
import { findUnusedRangesInFile } from "../image/ext4_unused.ts";
import type { Progress, ProgressListener } from "../progress.ts";
import {
  announce,
  diedOnThisHost,
  listActivities,
  removeAnnouncement,
  storeNow,
} from "./activity.ts";
import { hashChunk, isAllZero, toHex } from "./chunk_codec.ts";
import { DiskIndex } from "./disk_index.ts";
import {
  type DiskEntry,
  hasControlCharacters,
  MANIFEST_LIMITS,
  type ReleaseRecord,
  type VmDescription,
} from "./manifest.ts";
import type { Repository } from "./repository.ts";
import { commitVersion, type VersionContent } from "./commit_version.ts";
import { writeFreshness } from "./freshness.ts";

/** What a version is made of. */
export interface PublishInput {
  /** The system disk image (any format qemu-img reads). */
  system: string;
  /** The initial user disk image. */
  user?: string;
  /** Direct kernel boot files and command line. */
  kernel?: string;
  initrd?: string;
  append?: string;
  memoryMiB?: number;
  cpus?: number;
  ephemeralSizeBytes?: number;
  updateRequired?: boolean;
  note?: string;
  /**
   * Publish the images byte for byte. By default the blocks that an image's ext2/3/4
   * filesystems mark unused are published as zeroes: they hold only stale data (deleted
   * files, apt's downloaded packages), and storing it would make every update bigger.
   */
  exact?: boolean;
}

/** How to publish. */
export interface PublishOptions {
  key: SigningKey;
  onProgress?: ProgressListener;
  /** Chunk uploads in flight at once (default 8). */
  concurrency?: number;
  /** Where to convert non-raw images (default: the system's temp dir). */
  tempDir?: string;
  /** How long the freshness statement written with the version is valid (default 7 days). */
  freshnessMs?: number;
}

/** What a publish did. */
export interface PublishResult {
  version: number;
  /** Virtual bytes read from the images. */
  totalBytes: number;
  newChunks: number;
  /** Bytes of chunk objects uploaded. */
  newStoredBytes: number;
  elapsedMs: number;
}

/** A readable source of one disk: any `BlockDevice` will do. */
export interface DiskSource {
  readonly sizeBytes: number;
  read(offset: number, into: Uint8Array): Promise<void>;
  /** Byte ranges (sorted, merged) to publish as zeroes: blocks no filesystem uses. */
  unused?: readonly ByteRange[];
}

const MAX_COMMIT_ATTEMPTS = 20;
const GC_WAIT_LIMIT_MS = 30 * 60_000;

/** Publishes the images of `input` as the next version of `repo`. */
export async function publishVersion(
  repo: Repository,
  input: PublishInput,
  options: PublishOptions,
): Promise<PublishResult> {
  const images: [string, RawImage][] = [];
  try {
    for (
      const [name, path] of Object.entries({
        system: input.system,
        user: input.user,
        kernel: input.kernel,
        initrd: input.initrd,
      })
    ) {
      if (!path) continue;
      const isBootFile = name === "kernel" || name === "initrd";
      images.push([
        name,
        isBootFile ? await openPlainFile(path) : await openRawImage(path, options.tempDir),
      ]);
    }
    const sources: [string, DiskSource][] = [];
    const files: Deno.FsFile[] = [];
    try {
      for (const [name, image] of images) {
        const file = await Deno.open(image.path, { read: true });
        files.push(file);
        const isBootFile = name === "kernel" || name === "initrd";
        const unused = input.exact || isBootFile ? [] : await findUnusedRangesInFile(image.path);
        sources.push([name, { ...fileDiskSource(file, image.sizeBytes), unused }]);
      }
      const vm: VmDescription = {
        memoryMiB: input.memoryMiB ?? 1024,
        cpus: input.cpus ?? 1,
      };
      if (input.ephemeralSizeBytes) vm.ephemeralSizeBytes = input.ephemeralSizeBytes;
      if (input.kernel) vm.kernel = "kernel";
      if (input.initrd) vm.initrd = "initrd";
      if (input.append !== undefined) {
        if (!input.kernel) throw new UsageError("--append needs --kernel");
        vm.append = input.append;
      }
      if (input.initrd && !input.kernel) throw new UsageError("--initrd needs --kernel");
      _checkBounds(vm, images);
      return await publishDisks(repo, sources, vm, {
        ...options,
        updateRequired: input.updateRequired,
        note: input.note,
      });
    } finally {
      for (const file of files) file.close();
    }
  } finally {
    for (const [, image] of images) await image.cleanup();
  }
}

/**
 * Publishes disks given as sources (images, or a running appliance's disks) with a VM
 * description. The lower half of `publishVersion`.
 */
export async function publishDisks(
  repo: Repository,
  sources: [string, DiskSource][],
  vm: VmDescription,
  options: PublishOptions & { updateRequired?: boolean; note?: string; release?: ReleaseRecord },
): Promise<PublishResult> {
  const started = performance.now();
  const keyId = options.key.publicKeyId;
  if (repo.config.publisherKeys.length === 0) {
    // The first publisher of a new repository becomes its publisher (trust on first use).
    await repo.addPublisherKey(keyId);
  }
  repo.checkPublisher(keyId);

  const totalBytes = sources.reduce((sum, [, s]) => sum + s.sizeBytes, 0);
  const progress: Progress = {
    phase: "publishing",
    doneBytes: 0,
    totalBytes,
    transferredBytes: 0,
    elapsedMs: 0,
  };
  const report = () => {
    progress.elapsedMs = performance.now() - started;
    options.onProgress?.({ ...progress });
  };

  const intent = repo.store.canList ? await announce(repo.store, "publish") : null;
  try {
    let indexes: Map<string, DiskIndex>;
    let stats: { newChunks: number; newStoredBytes: number; perDisk: Map<string, number> };
    for (;;) {
      // Chunks of the newest version are known present; gc never deletes a
      // committed version's chunks, nor anything while this intent is fresh.
      const known = await _chunksOfLatest(repo);
      progress.doneBytes = 0;
      indexes = new Map();
      stats = { newChunks: 0, newStoredBytes: 0, perDisk: new Map() };
      for (const [name, source] of sources) {
        progress.phase = `publishing ${name} disk`;
        indexes.set(
          name,
          await _chunkDisk(repo, name, source, known, stats, progress, report, options),
        );
      }
      if (!intent || !(await _gcOverlapped(repo, intent.key, intent.startedMs))) break;
      // A gc that started before this intent may have swept chunks this pass found
      // present: pass again (it uploads only what is missing now).
      progress.transferredBytes = 0;
    }

    for (let attempt = 0; attempt < MAX_COMMIT_ATTEMPTS; attempt++) {
      const parent = await repo.latestVersion();
      const version = (parent ?? 0) + 1;
      const disks: Record<string, DiskEntry> = {};
      for (const [name, index] of indexes) {
        const ref = await repo.writeDiskIndex(version, name, index);
        disks[name] = {
          sizeBytes: index.sizeBytes,
          chunkBytes: index.chunkBytes,
          index: ref,
          dataChunks: index.dataChunkCount(),
          newStoredBytes: stats.perDisk.get(name) ?? 0,
        };
      }
      const content: VersionContent = { vm, disks };
      if (options.updateRequired) content.updateRequired = true;
      if (options.note) content.note = options.note;
      if (options.release) content.release = options.release;
      if (await commitVersion(repo, options.key, version, parent, content)) {
        await _vouch(repo, version, options);
        progress.phase = `published version ${version}`;
        progress.doneBytes = totalBytes;
        report();
        return {
          version,
          totalBytes,
          newChunks: stats.newChunks,
          newStoredBytes: stats.newStoredBytes,
          elapsedMs: performance.now() - started,
        };
      }
      // Another publisher committed `version` first: take the next number.
    }
    throw new ConflictError(
      `could not commit a version to ${repo.store.location}: other publishers kept committing first; retry`,
    );
  } finally {
    await intent?.end();
  }
}

/** Signs a fresh statement that `version` is the newest (docs/FORMAT.md, "Freshness"). */
async function _vouch(repo: Repository, version: number, options: PublishOptions): Promise<void> {
  try {
    await writeFreshness(repo, options.key, { validForMs: options.freshnessMs });
  } catch (err) {
    throw new PermanentError(
      `version ${version} is committed, but its freshness statement could not be written ` +
        `(${
          (err as Error).message
        }); write it with: vat repo refresh ${repo.store.location} --key KEY`,
      { cause: err },
    );
  }
}

/** The hex hashes of every chunk of the newest version (empty when there is none). */
async function _chunksOfLatest(repo: Repository): Promise<Set<string>> {
  const known = new Set<string>();
  const latest = await repo.latestVersion();
  if (latest === null) return known;
  const { manifest } = await repo.readVersion(latest);
  for (const disk of Object.values(manifest.disks)) {
    const index = await repo.readDiskIndex(disk.index);
    for (const [, hash] of index.dataChunks()) known.add(toHex(hash));
  }
  return known;
}

/**
 * Whether a gc run that started before `sinceMs` (this publish's start) overlapped
 * this publish; waits for every such run to end first. A run whose process died on
 * this machine is not waited for (it may have swept part of what this pass found
 * present, so it still counts as overlapping); its announcement is removed.
 */
async function _gcOverlapped(
  repo: Repository,
  intentKey: string,
  sinceMs: number,
): Promise<boolean> {
  const deadline = performance.now() + GC_WAIT_LIMIT_MS;
  let overlapped = false;
  for (;;) {
    const now = await storeNow(repo.store, { key: intentKey });
    const earlier = (await listActivities(repo.store, now)).filter((a) =>
      a.kind === "gc" && a.startedMs <= sinceMs
    );
    if (earlier.length === 0) return overlapped;
    overlapped = true;
    const running = [];
    for (const gc of earlier) {
      if (await diedOnThisHost(repo.store, gc)) await removeAnnouncement(repo.store, gc.key);
      else running.push(gc);
    }
    if (running.length === 0) return overlapped;
    if (performance.now() > deadline) {
      throw new PermanentError(
        `a gc run (${running[0].key}) has held ${repo.store.location} for too long; retry later`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function _chunkDisk(
  repo: Repository,
  name: string,
  source: DiskSource,
  known: Set<string>,
  stats: { newChunks: number; newStoredBytes: number; perDisk: Map<string, number> },
  progress: Progress,
  report: () => void,
  options: PublishOptions,
): Promise<DiskIndex> {
  const chunkBytes = repo.config.chunkSizeBytes;
  const index = new DiskIndex(source.sizeBytes, chunkBytes);
  const concurrency = options.concurrency ?? 8;
  const inFlight = new Set<Promise<void>>();
  const seen = new Set<string>();
  let failure: unknown = null;

  for (let i = 0; i < index.count; i++) {
    if (failure) break;
    const length = index.chunkLength(i);
    if (source.unused && coversFully(source.unused, i * chunkBytes, length)) {
      // Unused by the filesystem: published as zeroes without reading it.
      progress.doneBytes += length;
      report();
      continue;
    }
    const data = new Uint8Array(length);
    await source.read(i * chunkBytes, data);
    if (source.unused?.length) zeroRanges(data, i * chunkBytes, source.unused);
    progress.doneBytes += length;
    if (isAllZero(data)) {
      report();
      continue;
    }
    const hash = hashChunk(data);
    index.setHash(i, hash);
    const id = toHex(hash);
    if (known.has(id) || seen.has(id)) {
      report();
      continue;
    }
    seen.add(id);
    const task = (async () => {
      if (await repo.hasChunk(hash)) return;
      const stored = await repo.writeChunk(hash, data);
      stats.newChunks++;
      stats.newStoredBytes += stored;
      stats.perDisk.set(name, (stats.perDisk.get(name) ?? 0) + stored);
      progress.transferredBytes += stored;
      report();
    })().catch((err) => {
      failure ??= err;
    });
    inFlight.add(task);
    task.finally(() => inFlight.delete(task));
    if (inFlight.size >= concurrency) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failure) throw failure;
  report();
  return index;
}

/** A disk read from an open file (bytes past its end read as zeroes). */
export function fileDiskSource(file: Deno.FsFile, sizeBytes: number): DiskSource {
  let position = -1;
  return {
    sizeBytes,
    async read(offset: number, into: Uint8Array) {
      if (position !== offset) await file.seek(offset, Deno.SeekMode.Start);
      let filled = 0;
      while (filled < into.length) {
        const n = await file.read(into.subarray(filled));
        if (n === null) {
          // Past the end of a file shorter than its virtual size: zeroes.
          into.fill(0, filled);
          break;
        }
        filled += n;
      }
      position = offset + into.length;
    },
  };
}

/**
 * Refuses, before anything is uploaded, what `signManifest` would refuse at the end
 * (`MANIFEST_LIMITS`), naming the flag.
 */
function _checkBounds(vm: VmDescription, images: [string, { sizeBytes: number }][]): void {
  const L = MANIFEST_LIMITS;
  if (!(vm.memoryMiB >= 1 && vm.memoryMiB <= L.maxMemoryMiB)) {
    throw new UsageError(`--memory ${vm.memoryMiB} is not from 1 to ${L.maxMemoryMiB} MiB`);
  }
  if (!(vm.cpus >= 1 && vm.cpus <= L.maxCpus)) {
    throw new UsageError(`--cpus ${vm.cpus} is not from 1 to ${L.maxCpus}`);
  }
  if ((vm.ephemeralSizeBytes ?? 0) > L.maxDiskBytes) {
    throw new UsageError(`--ephemeral-size is larger than ${L.maxDiskBytes} bytes`);
  }
  if (
    vm.append !== undefined &&
    (vm.append.length > L.maxAppendChars || hasControlCharacters(vm.append))
  ) {
    throw new UsageError(`--append must be one line of at most ${L.maxAppendChars} characters`);
  }
  for (const [name, image] of images) {
    const limit = name === "kernel" || name === "initrd" ? L.maxBootFileBytes : L.maxDiskBytes;
    if (image.sizeBytes > limit) {
      throw new UsageError(
        `--${
          name === "system" ? "image" : name === "user" ? "user-disk" : name
        } is ${image.sizeBytes} bytes, more than ${limit}`,
      );
    }
  }
}
