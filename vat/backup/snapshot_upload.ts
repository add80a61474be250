/**
 * Uploading one queued snapshot as the next version of its series (docs/BACKUP.md): its
 * new chunk objects, sent by a few workers through the uplink's rate limiter (and the
 * VAT's fetch scheduler, at its lowest level), then its index and the signed version.
 * Which series and which number are the subscription's business
 * (`subscription_backup.ts`): this module only sends and commits.
 *
 * @module
 */

import { TransientError } from "../errors.ts";
import type { SigningKey } from "../auth/signing_key.ts";
import { fromHex } from "../repo/chunk_codec.ts";
import { commitVersion } from "../repo/commit_version.ts";
import type { Repository } from "../repo/repository.ts";
import type { ProgressMeter } from "../progress.ts";
import type { RateLimiter } from "../rate_limiter.ts";
import type { Outbox, QueuedSnapshot } from "./outbox.ts";

/** Chunk objects in flight at once. */
const UPLOAD_CONCURRENCY = 4;

/** What sending a snapshot's objects works with. */
export interface SendContext {
  repo: Repository;
  outbox: Outbox;
  limiter: RateLimiter;
  /** Runs one upload request when the link is the backup's turn; default: at once. */
  schedule?: <T>(task: () => Promise<T>) => Promise<T>;
  meter: ProgressMeter;
  /** The daemon is stopping: no new request is started. */
  stopping(): boolean;
  /** Bytes of an object that was sent. */
  onSent(bytes: number): void;
}

/**
 * Sends `snapshot`'s chunk objects the repository does not hold yet. Returns early
 * when the snapshot left the outbox meanwhile (collapsed into a newer one).
 */
export async function sendObjects(snapshot: QueuedSnapshot, ctx: SendContext): Promise<void> {
  const { repo, outbox, meter } = ctx;
  const schedule = ctx.schedule ?? ((task) => task());
  let next = 0;
  const worker = async () => {
    while (next < snapshot.objects.length) {
      const id = snapshot.objects[next++];
      const hash = fromHex(id);
      if (await repo.hasChunk(hash)) {
        meter.advance(0);
        continue;
      }
      let object: Uint8Array;
      try {
        object = await outbox.readObject(id);
      } catch (err) {
        if (err instanceof Deno.errors.NotFound && !outbox.isQueued(snapshot.seq)) return;
        throw err;
      }
      await ctx.limiter.take(object.length);
      if (ctx.stopping()) throw new TransientError("the upload stopped with the daemon");
      await schedule(() => repo.writeEncodedChunk(hash, object));
      meter.advance(object.length);
      ctx.onSent(object.length);
    }
  };
  await Promise.all(Array.from({ length: UPLOAD_CONCURRENCY }, worker));
}

/** Who commits a snapshot, and where. */
export interface CommitTarget {
  repo: Repository;
  key: SigningKey;
  /** The series' newest version now (null: none). */
  latest: number | null;
  series: string;
  vatId: string;
  limiter: RateLimiter;
}

/**
 * Writes `snapshot`'s index and commits it as version `latest + 1` of the series;
 * returns that number, or null when another VAT committed it first.
 */
export async function commitSnapshot(
  snapshot: QueuedSnapshot,
  target: CommitTarget,
): Promise<number | null> {
  const { repo, latest } = target;
  const version = (latest ?? 0) + 1;
  const ref = await repo.writeDiskIndex(version, "user", snapshot.index);
  await target.limiter.take(ref.sizeBytes); // the index counts against the cap too
  const committed = await commitVersion(repo, target.key, version, latest, {
    vm: snapshot.vm,
    disks: {
      user: {
        sizeBytes: snapshot.index.sizeBytes,
        chunkBytes: snapshot.index.chunkBytes,
        index: ref,
        dataChunks: snapshot.index.dataChunkCount(),
        newStoredBytes: snapshot.objectBytes,
      },
    },
    snapshot: {
      id: snapshot.id,
      takenAt: snapshot.takenAt,
      reason: snapshot.reason,
      changedBytes: snapshot.changedBytes,
      dataBytes: snapshot.dataBytes,
      vatId: target.vatId,
      undoneTo: snapshot.undoneTo,
    },
    subscription: target.series,
  }, { latestRequired: false });
  return committed ? version : null;
}
