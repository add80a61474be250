/**
 * `verifyRepository`: checks the chain of signed key lists and the freshness
 * statement, every version's signature and disk indexes, that every chunk they name
 * exists, and with `all` that every chunk's content hashes to its name. It reads only;
 * problems are collected, not thrown, so one run lists them all.
 *
 * @module
 */

import { NotFoundError, VatError } from "../errors.ts";
import { FRESHNESS_KEY, openFreshness } from "./freshness.ts";
import { followKeyLists } from "./key_list.ts";
import type { Progress, ProgressListener } from "../progress.ts";
import { chunkKey, fromHex, toHex } from "./chunk_codec.ts";
import type { Repository } from "./repository.ts";

/** What a verification found. */
export interface VerifyReport {
  versions: number[];
  /** Distinct chunks referenced by the versions. */
  chunks: number;
  /** Chunks whose content was read and hash-checked. */
  chunksRead: number;
  problems: string[];
}

/** Verifies `repo`; `all` also reads and hash-checks every chunk. */
export async function verifyRepository(
  repo: Repository,
  options: { all?: boolean; onProgress?: ProgressListener; concurrency?: number } = {},
): Promise<VerifyReport> {
  const report: VerifyReport = { versions: [], chunks: 0, chunksRead: 0, problems: [] };
  // chunk id -> where it is first used, for messages
  const chunks = new Map<string, string>();
  if (repo.config.kind !== "data") report.problems.push(...await _checkTrustObjects(repo));
  report.versions = await repo.listVersions();
  for (const n of report.versions) {
    try {
      const { manifest } = await repo.readVersion(n);
      for (const [name, disk] of Object.entries(manifest.disks)) {
        const index = await repo.readDiskIndex(disk.index);
        if (index.sizeBytes !== disk.sizeBytes) {
          report.problems.push(`version ${n} ${name} disk: index size differs from manifest`);
        }
        for (const [i, hash] of index.dataChunks()) {
          const id = toHex(hash);
          if (!chunks.has(id)) chunks.set(id, `version ${n} ${name} disk, chunk ${i}`);
        }
      }
    } catch (err) {
      if (!(err instanceof VatError)) throw err;
      report.problems.push(err.message);
    }
  }
  report.chunks = chunks.size;

  const started = performance.now();
  const progress: Progress = {
    phase: options.all ? "reading every chunk" : "checking chunks exist",
    doneBytes: 0,
    totalBytes: chunks.size,
    transferredBytes: 0,
    elapsedMs: 0,
    unit: "chunks",
  };
  const ids = [...chunks.keys()];
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++];
      const where = chunks.get(id)!;
      try {
        if (options.all) {
          const data = await repo.readChunk(fromHex(id));
          progress.transferredBytes += data.length;
          report.chunksRead++;
        } else if (!(await repo.store.stat(chunkKey(id)))) {
          report.problems.push(`chunk ${id} (${where}) is missing`);
        }
      } catch (err) {
        if (!(err instanceof VatError)) throw err;
        report.problems.push(`${err.message} (${where})`);
      }
      progress.doneBytes++;
      progress.elapsedMs = performance.now() - started;
      options.onProgress?.({ ...progress });
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 8 }, worker));
  return report;
}

/**
 * The key lists must form a chain from `repo.json`'s first keys (as a VAT pinning on
 * first use follows them) ending in `repo.json`'s keys, and the freshness statement
 * must be signed by one of them and not expired.
 */
async function _checkTrustObjects(repo: Repository): Promise<string[]> {
  const problems: string[] = [];
  const { pins, problem } = await followKeyLists(
    repo.store,
    repo.config.id,
    { sequence: 0, keys: [...repo.config.publisherKeys], retired: [] },
    "first-use",
  );
  if (problem) problems.push(problem);
  const listed = [...repo.config.publisherKeys].sort().join(",");
  if (pins.sequence > 0 && [...pins.keys].sort().join(",") !== listed) {
    problems.push(
      `repo.json's publisherKeys differ from key list ${pins.sequence}, which VATs follow ` +
        `(write repo.json again with vat repo add-key)`,
    );
  }
  try {
    const statement = openFreshness(await repo.store.get(FRESHNESS_KEY), {
      repoId: repo.config.id,
      trustedKeys: pins.keys,
    });
    if (Date.parse(statement.expires) < Date.now()) {
      problems.push(
        `the freshness statement expired ${statement.expires}: online VATs report the ` +
          `repository as possibly frozen (renew it: vat repo refresh REPO --key KEY)`,
      );
    }
  } catch (err) {
    if (err instanceof NotFoundError) return problems;
    if (!(err instanceof VatError)) throw err;
    problems.push(err.message);
  }
  return problems;
}
