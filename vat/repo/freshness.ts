/**
 * Freshness statements (docs/FORMAT.md, "Freshness"): `timestamp.json`, a short-lived
 * signed statement of a publisher that version N is the repository's newest, valid
 * until a time. Publishing writes one, and `vat repo refresh` renews it. A VAT that is
 * online and only ever finds an expired one knows that it may be looking at a frozen
 * copy of the repository (TUF's timestamp role, against freeze attacks).
 *
 * @module
 */

import { IntegrityError, NotFoundError } from "../errors.ts";
import type { SigningKey } from "../auth/signing_key.ts";
import { openEnvelope, signEnvelope } from "./signed_envelope.ts";
import type { Repository } from "./repository.ts";

const SIGNING_CONTEXT = "vat-timestamp-v1\n";

/** The object key of the freshness statement. */
export const FRESHNESS_KEY = "timestamp.json";

/**
 * How long a statement is valid by default: 7 days (docs/SECURITY.md, "Freeze"). The
 * publisher's key signs it, and that key should not live on an always-on machine, so
 * renewing is a weekly job rather than an hourly one; a VAT on a frozen copy says so
 * within a week.
 */
export const DEFAULT_FRESHNESS_MS = 7 * 24 * 3600_000;

/** The payload of `timestamp.json`. */
export interface FreshnessStatement {
  format: 1;
  repoId: string;
  /** The newest committed version when it was signed (0: none yet). */
  latest: number;
  signedAt: string;
  expires: string;
  publisher: string;
}

/** Signs and stores a statement that the repository's newest version is `latest`. */
export async function writeFreshness(
  repo: Repository,
  key: SigningKey,
  options: { validForMs?: number; now?: Date } = {},
): Promise<FreshnessStatement> {
  const now = options.now ?? new Date();
  const statement: FreshnessStatement = {
    format: 1,
    repoId: repo.config.id,
    latest: (await repo.latestVersion()) ?? 0,
    signedAt: now.toISOString(),
    expires: new Date(now.getTime() + (options.validForMs ?? DEFAULT_FRESHNESS_MS)).toISOString(),
    publisher: key.publicKeyId,
  };
  const bytes = signEnvelope(JSON.stringify(statement, null, 2), SIGNING_CONTEXT, key);
  await repo.store.put(FRESHNESS_KEY, bytes);
  return statement;
}

/** Parses and checks a statement: signed by one of `trustedKeys`, of repository `repoId`. */
export function openFreshness(
  bytes: Uint8Array,
  expect: { repoId: string; trustedKeys: readonly string[] },
): FreshnessStatement {
  const what = `the freshness statement (${FRESHNESS_KEY})`;
  const { payload, signer } = openEnvelope(bytes, SIGNING_CONTEXT, expect.trustedKeys, what);
  let s: FreshnessStatement;
  try {
    s = JSON.parse(payload);
  } catch (err) {
    throw new IntegrityError(`${what}: payload is not valid JSON`, { cause: err });
  }
  if (s?.format !== 1) throw new IntegrityError(`${what}: unsupported format`);
  if (s.repoId !== expect.repoId) {
    throw new IntegrityError(`${what}: it belongs to another repository`);
  }
  if (s.publisher !== signer) throw new IntegrityError(`${what}: publisher and signer differ`);
  const signedAt = Date.parse(s.signedAt);
  const expires = Date.parse(s.expires);
  if (
    !Number.isSafeInteger(s.latest) || s.latest < 0 || !Number.isFinite(signedAt) ||
    !Number.isFinite(expires) || expires <= signedAt
  ) {
    throw new IntegrityError(`${what}: latest, signedAt or expires is invalid`);
  }
  return s;
}

/** What a reader last saw a publisher vouch for (the newest statement it accepted). */
export interface Vouched {
  latest: number;
  signedAt: string;
  expires: string;
}

/**
 * What is wrong with a repository that offers version `offered` as its newest, given the
 * newest statement seen (docs/SECURITY.md, "Freeze"): it withholds a version its
 * publisher vouched for, or its statement expired (a frozen copy, hiding updates).
 * Null when neither. `offered` is looked up again (`lookAgain`) before calling a
 * withheld version an attack, since a publish may land between the two reads.
 */
export async function freshnessProblem(
  vouched: Vouched,
  offered: number | null,
  location: string,
  lookAgain: () => Promise<number | null>,
  nowMs = Date.now(),
): Promise<string | null> {
  if (vouched.latest > (offered ?? 0)) offered = await lookAgain();
  if (vouched.latest > (offered ?? 0)) {
    return `the publisher vouched on ${vouched.signedAt} that version ${vouched.latest} is ` +
      `the newest, but ${location} offers ${
        offered === null ? "no version" : `only version ${offered}`
      }: the repository withholds newer versions`;
  }
  if (nowMs > Date.parse(vouched.expires)) {
    return `the repository has not vouched for its newest version since ${vouched.signedAt} ` +
      `(the statement expired ${vouched.expires}): it may be a frozen copy that hides ` +
      `updates; ask its publisher to run vat repo refresh`;
  }
  return null;
}

/** Where a reader keeps the newest statement it accepted (so a replay changes nothing). */
export interface VouchedKeeper {
  load(): Promise<Vouched | null>;
  save(vouched: Vouched): Promise<void>;
}

/**
 * Reads `repo`'s statement (signed by one of `trustedKeys`, of repository `repoId`),
 * keeps it when it is newer than the one `kept` holds (an older one is a replay: the
 * newer stands), and judges the repository offering `offered` by the newest
 * (`freshnessProblem`). A statement that does not check out is the problem; a
 * repository that never made one has none.
 */
export async function checkFreshness(
  repo: Repository,
  expect: { repoId: string; trustedKeys: readonly string[] },
  offered: number | null,
  kept: VouchedKeeper,
): Promise<string | null> {
  let vouched = await kept.load();
  let problem: string | null = null;
  try {
    const served = openFreshness(await repo.store.get(FRESHNESS_KEY), expect);
    if (!vouched || Date.parse(served.signedAt) > Date.parse(vouched.signedAt)) {
      vouched = { latest: served.latest, signedAt: served.signedAt, expires: served.expires };
      await kept.save(vouched);
    }
  } catch (err) {
    if (err instanceof IntegrityError) problem = err.message;
    else if (!(err instanceof NotFoundError)) throw err;
  }
  if (!vouched) return problem;
  return await freshnessProblem(
    vouched,
    offered,
    repo.store.location,
    () => repo.latestVersion(),
  ) ?? problem;
}
