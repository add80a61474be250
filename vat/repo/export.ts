/**
 * `exportDisk`: one disk of a version as a raw image, every chunk verified. The output
 * file is sparse (all-zero chunks are holes) and written to a temporary name first,
 * so a failed export never leaves a plausible-looking but wrong image behind.
 *
 * @module
 */

import { NotFoundError } from "../errors.ts";
import { mapDiskFull } from "../fs_atomic.ts";
import type { Progress, ProgressListener } from "../progress.ts";
import type { Repository, Version } from "./repository.ts";

/** What to export and how. */
export interface ExportOptions {
  disk?: string;
  onProgress?: ProgressListener;
  /** Chunk fetches in flight at once (default 8). */
  concurrency?: number;
}

/** Writes disk `options.disk` (default "system") of `version` to `outPath` ("-": stdout). */
export async function exportDisk(
  repo: Repository,
  version: Version,
  outPath: string,
  options: ExportOptions = {},
): Promise<{ sizeBytes: number }> {
  const name = options.disk ?? "system";
  const entry = Object.hasOwn(version.manifest.disks, name)
    ? version.manifest.disks[name]
    : undefined;
  if (!entry) {
    const have = Object.keys(version.manifest.disks).join(", ");
    throw new NotFoundError(`version ${version.number} has no ${name} disk (it has: ${have})`);
  }
  const index = await repo.readDiskIndex(entry.index);
  const started = performance.now();
  const progress: Progress = {
    phase: `exporting ${name} disk of version ${version.number}`,
    doneBytes: 0,
    totalBytes: index.sizeBytes,
    transferredBytes: 0,
    elapsedMs: 0,
  };
  const toStdout = outPath === "-";
  const tempPath = toStdout ? "" : `${outPath}.vat-partial`;
  const out = toStdout
    ? Deno.stdout
    : await Deno.open(tempPath, { write: true, create: true, truncate: true });
  try {
    const concurrency = options.concurrency ?? 8;
    const pending: Promise<Uint8Array | null>[] = [];
    const fetchChunk = (i: number) => {
      const hash = index.hash(i);
      const fetched = hash ? repo.readChunk(hash) : Promise.resolve(null);
      // Fetches run ahead of the writer; one that fails after an earlier failure has
      // already ended the export must not become an unhandled rejection.
      fetched.catch(() => {});
      return fetched;
    };
    for (let i = 0; i < Math.min(concurrency, index.count); i++) pending.push(fetchChunk(i));
    let zeroes: Uint8Array | null = null;
    for (let i = 0; i < index.count; i++) {
      const data = await pending.shift()!;
      if (i + concurrency < index.count) pending.push(fetchChunk(i + concurrency));
      const length = index.chunkLength(i);
      if (data) {
        if (!toStdout) await (out as Deno.FsFile).seek(i * index.chunkBytes, Deno.SeekMode.Start);
        await _writeAll(out, data);
        progress.transferredBytes += data.length;
      } else if (toStdout) {
        zeroes ??= new Uint8Array(index.chunkBytes);
        await _writeAll(out, zeroes.subarray(0, length));
      }
      progress.doneBytes += length;
      progress.elapsedMs = performance.now() - started;
      options.onProgress?.({ ...progress });
    }
    if (!toStdout) {
      const file = out as Deno.FsFile;
      await file.truncate(index.sizeBytes);
      await file.sync();
      file.close();
      await Deno.rename(tempPath, outPath);
    }
    return { sizeBytes: index.sizeBytes };
  } catch (err) {
    if (!toStdout) {
      try {
        (out as Deno.FsFile).close();
      } catch { /* already closed */ }
      await Deno.remove(tempPath).catch(() => {});
    }
    throw mapDiskFull(err, outPath);
  }
}

async function _writeAll(out: { write(p: Uint8Array): Promise<number> }, data: Uint8Array) {
  let written = 0;
  while (written < data.length) written += await out.write(data.subarray(written));
}
