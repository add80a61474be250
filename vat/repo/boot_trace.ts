/**
 * Boot traces and access profiles (docs/FORMAT.md, "Boot traces"): the chunks a
 * version reads while it boots, in the order it first reads them, and how often each
 * chunk was read across every recorded boot. Stored as `versions/N/trace.json`, a
 * signed envelope like the manifest's but with its own signing context, so that a
 * trace signature can never pass for a manifest's or the other way round.
 *
 * @module
 */

import { IntegrityError, NotFoundError } from "../errors.ts";
import { type PublicKeyId, signBytes, type SigningKey, verifyBytes } from "../auth/signing_key.ts";
import type { Repository, Version } from "./repository.ts";

const SIGNING_CONTEXT = "vat-trace-v1\n";

/** Largest trace object a reader accepts. */
const MAX_TRACE_BYTES = 64 * 1024 * 1024;
/** Most entries in a trace's order or profile. */
const MAX_ENTRIES = 1 << 22;

/** The key of version `n`'s trace. */
export const traceKey = (n: number) => `versions/${n}/trace.json`;

/** A verified boot trace with its access profile. */
export interface BootTrace {
  format: 1;
  repoId: string;
  version: number;
  publisher: PublicKeyId;
  updatedAt: string;
  /** The console line that ended the recordings (null: the time limit did). */
  until: string | null;
  /** How many recorded boots the profile adds up. */
  runs: number;
  /** Names of the disks (entries of the manifest's `disks`) the entries refer to by number. */
  disks: string[];
  /** The newest recording: [disk, chunk] in the order of their first read. */
  order: [number, number][];
  /** [disk, chunk, reads] across every recording, most read first. */
  profile: [number, number, number][];
}

/** One recorded boot: first reads in order and read counts, by disk name. */
export interface TraceRecording {
  order: [string, number][];
  reads: Map<string, Map<number, number>>;
}

/**
 * `previous` (or nothing) with `recording` added: the order becomes the recording's
 * (the newest boot is the best guess of the next), the profile sums every boot's reads.
 */
export function mergeTrace(
  previous: BootTrace | null,
  recording: TraceRecording,
  meta: { repoId: string; version: number; publisher: PublicKeyId; until: string | null },
): BootTrace {
  const disks: string[] = [...previous?.disks ?? []];
  const diskNumber = (name: string) => {
    let i = disks.indexOf(name);
    if (i < 0) i = disks.push(name) - 1;
    return i;
  };
  const reads = new Map<string, number>();
  for (const [disk, chunk, count] of previous?.profile ?? []) {
    reads.set(`${disk}:${chunk}`, count);
  }
  for (const [name, chunks] of recording.reads) {
    const disk = diskNumber(name);
    for (const [chunk, count] of chunks) {
      const key = `${disk}:${chunk}`;
      reads.set(key, (reads.get(key) ?? 0) + count);
    }
  }
  const profile: [number, number, number][] = [...reads].map(([key, count]) => {
    const [disk, chunk] = key.split(":").map(Number);
    return [disk, chunk, count];
  });
  profile.sort((a, b) => b[2] - a[2] || a[0] - b[0] || a[1] - b[1]);
  return {
    format: 1,
    repoId: meta.repoId,
    version: meta.version,
    publisher: meta.publisher,
    updatedAt: new Date().toISOString(),
    until: meta.until,
    runs: (previous?.runs ?? 0) + 1,
    disks,
    order: recording.order.map(([name, chunk]) => [diskNumber(name), chunk]),
    profile,
  };
}

/** Serializes and signs a trace into the bytes of its object. */
export function signTrace(trace: BootTrace, key: SigningKey): Uint8Array {
  const payload = JSON.stringify(trace);
  const sig = signBytes(key, new TextEncoder().encode(SIGNING_CONTEXT + payload));
  return new TextEncoder().encode(
    JSON.stringify({ payload, signatures: [{ key: key.publicKeyId, sig }] }) + "\n",
  );
}

/**
 * Parses a trace object and checks it against `version`: signed by one of
 * `trustedKeys` (who must be its `publisher`), for this repository and version, every
 * disk a disk of the version and every chunk within it. Throws `IntegrityError`.
 */
export function openTrace(
  bytes: Uint8Array,
  expect: { repoId: string; version: Version; trustedKeys: readonly string[] },
): BootTrace {
  const what = `the boot trace of version ${expect.version.number}`;
  let envelope: { payload?: unknown; signatures?: unknown };
  try {
    envelope = JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw new IntegrityError(`${what} is not valid JSON`, { cause: err });
  }
  if (typeof envelope?.payload !== "string" || !Array.isArray(envelope.signatures)) {
    throw new IntegrityError(`${what} is not a signed envelope`);
  }
  const message = new TextEncoder().encode(SIGNING_CONTEXT + envelope.payload);
  const signer = (envelope.signatures as { key?: unknown; sig?: unknown }[]).find((s) =>
    typeof s?.key === "string" && typeof s.sig === "string" &&
    expect.trustedKeys.includes(s.key) && verifyBytes(s.key, message, s.sig)
  );
  if (!signer) {
    throw new IntegrityError(
      `${what}: signature does not verify against the repository's publisher keys`,
    );
  }
  let trace: BootTrace;
  try {
    trace = JSON.parse(envelope.payload);
  } catch (err) {
    throw new IntegrityError(`${what}: payload is not valid JSON`, { cause: err });
  }
  const fail = (field: string) => new IntegrityError(`${what}: field ${field} is invalid`);
  if (trace?.format !== 1) throw fail("format");
  if (trace.repoId !== expect.repoId) throw fail("repoId");
  if (trace.version !== expect.version.number) throw fail("version");
  if (trace.publisher !== signer.key) throw fail("publisher");
  if (!Number.isSafeInteger(trace.runs) || trace.runs < 1) throw fail("runs");
  if (trace.until !== null && typeof trace.until !== "string") throw fail("until");
  if (!Array.isArray(trace.disks)) throw fail("disks");
  const chunkCounts = trace.disks.map((name) => {
    const disk = typeof name === "string" ? expect.version.manifest.disks[name] : undefined;
    if (!disk || !Object.hasOwn(expect.version.manifest.disks, name)) throw fail(`disks ${name}`);
    return Math.ceil(disk.sizeBytes / disk.chunkBytes);
  });
  const entry = (e: unknown, width: number) =>
    Array.isArray(e) && e.length === width && e.every((n) => Number.isSafeInteger(n) && n >= 0) &&
    e[0] < chunkCounts.length && e[1] < chunkCounts[e[0]];
  if (!Array.isArray(trace.order) || trace.order.length > MAX_ENTRIES) throw fail("order");
  if (!trace.order.every((e) => entry(e, 2))) throw fail("order");
  if (!Array.isArray(trace.profile) || trace.profile.length > MAX_ENTRIES) throw fail("profile");
  if (!trace.profile.every((e) => entry(e, 3))) throw fail("profile");
  return trace;
}

/** Version `version`'s trace, verified; null when it has none. */
export async function readBootTrace(repo: Repository, version: Version): Promise<BootTrace | null> {
  let bytes: Uint8Array;
  try {
    bytes = await repo.store.get(traceKey(version.number));
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
  if (bytes.length > MAX_TRACE_BYTES) {
    throw new IntegrityError(`the boot trace of version ${version.number} is too large`);
  }
  return openTrace(bytes, {
    repoId: repo.config.id,
    version,
    trustedKeys: repo.trustedKeys(version.number),
  });
}

/**
 * Adds `recording` to `version`'s trace (made if absent) and stores it, signed with
 * `key`, which must be a publisher of the repository. Returns the stored trace.
 */
export async function writeBootTrace(
  repo: Repository,
  version: Version,
  recording: TraceRecording,
  key: SigningKey,
  until: string | null,
): Promise<BootTrace> {
  repo.checkPublisher(key.publicKeyId);
  const previous = await readBootTrace(repo, version);
  const trace = mergeTrace(previous, recording, {
    repoId: repo.config.id,
    version: version.number,
    publisher: key.publicKeyId,
    until,
  });
  // Overwritten in place: a reader sees the old trace or the new one (every transport's
  // put is atomic), and either is a valid hint; the version itself never changes.
  await repo.store.put(traceKey(version.number), signTrace(trace, key));
  return trace;
}
