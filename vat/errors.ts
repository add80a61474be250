/**
 * The few error classes vat uses everywhere. Messages say what failed, on which
 * object, and what to do; causes are chained with `{ cause }`. The CLI prints the
 * message of any `VatError` and exits non-zero; NBD maps them to NBD error codes in
 * one place (`vat/nbd/nbd_errors.ts`).
 */

/** Base class: an expected failure whose message is meant for the user. */
export class VatError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An object, version, repository or file that does not exist. */
export class NotFoundError extends VatError {}

/** Data that exists but is wrong: a hash, signature or format that does not check out. */
export class IntegrityError extends VatError {}

/** A conditional create lost: the object already exists. */
export class ConflictError extends VatError {}

/** Bad input from the user: flags, names, sizes. */
export class UsageError extends VatError {}

/** A request that can never succeed as asked (forbidden, unsupported, disk full). */
export class PermanentError extends VatError {}

/** A peer that spoke the protocol wrongly (NBD, HTTP, S3 answers we cannot parse). */
export class ProtocolError extends VatError {}

/** A transient failure (network, timeout, 5xx) that a retry may cure. */
export class TransientError extends VatError {
  /** The status a server answered with (429, 503, ...); absent when none answered. */
  readonly status?: number;
  /** How long the server asked to wait before a retry (its `Retry-After`), if it said. */
  readonly retryAfterMs?: number;

  constructor(
    message: string,
    options?: { cause?: unknown; status?: number; retryAfterMs?: number },
  ) {
    super(message, options);
    if (options?.status !== undefined) this.status = options.status;
    if (options?.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
  }
}

/** A deadline passed before what was awaited happened (a line, an answer, a start). */
export class TimeoutError extends TransientError {}

/** Whether an error is worth retrying: transient ones and plain network failures. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof TransientError) return true;
  if (err instanceof VatError) return false;
  return err instanceof TypeError || err instanceof Deno.errors.ConnectionRefused ||
    err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.TimedOut;
}

/**
 * The HTTP status of each error class the daemon's API answers with, and back: one
 * table for the server (`api_app.ts`) and its clients (`api_client.ts`; the browser UI
 * reads the status itself). Classes are tried in order, so a subclass comes before its
 * base. Anything else is 500.
 */
const _HTTP_STATUSES: [new (message: string) => VatError, number][] = [
  [UsageError, 400],
  [NotFoundError, 404],
  [ConflictError, 409],
  [PermanentError, 422],
];

/** The HTTP status for `err` (500 for what the table does not name). */
export function httpStatusOf(err: unknown): number {
  return _HTTP_STATUSES.find(([kind]) => err instanceof kind)?.[1] ?? 500;
}

/** The error an HTTP status carries back (a `VatError` for statuses the table does not name). */
export function errorOfHttpStatus(status: number, message: string): VatError {
  const kind = _HTTP_STATUSES.find(([, s]) => s === status)?.[0] ?? VatError;
  return new kind(message);
}
