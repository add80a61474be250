/**
 * The HTTP transport's handling of one exchange with a server: a deadline that bounds
 * stalls (renewed as each part of a body arrives) and ends with the caller's own
 * signal, and reading what a server's answer says (a range, a directory redirect, a
 * short reason from an error page) without reading more of it than that, and the
 * errors a failed exchange becomes.
 *
 * @module
 */

import { PermanentError, ProtocolError, TransientError, type VatError } from "../errors.ts";
import { parseRetryAfter, readStreamHead } from "./store.ts";

/**
 * The slowest upload a request waits for. fetch does not tell how much of a body has
 * gone, so a request with a body gets its stall limit plus the body's bytes at this
 * rate. 8 KiB/s (64 kbit/s) is below any uplink a VAT works over; at the 64 KiB/s
 * used before, an 8 MiB object (the index of a 16 GiB user disk's snapshot) could never
 * go up the paper's 384 kbit/s DSL uplink (it takes 175 s).
 */
export const MIN_UPLOAD_BYTES_PER_SECOND = 8 * 1024;

/** How long a request with a body of `bodyBytes` may take before its answer starts. */
export function uploadAllowanceMs(stallMs: number, bodyBytes: number): number {
  return stallMs + Math.ceil((bodyBytes / MIN_UPLOAD_BYTES_PER_SECOND) * 1000);
}

/**
 * A deadline that aborts a request unless renewed: renewed when the response starts
 * and at every part of its body, so it bounds stalls rather than the whole transfer.
 * The caller's own signal aborts it too.
 */
export class Deadline {
  readonly #controller = new AbortController();
  readonly #ms: number;
  readonly #caller: AbortSignal | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  lastMs: number;
  expired = false;

  constructor(ms: number, caller?: AbortSignal) {
    this.#ms = ms;
    this.lastMs = ms;
    this.#caller = caller;
    if (caller?.aborted) this.#controller.abort(caller.reason);
    caller?.addEventListener("abort", this.#onCallerAbort, { once: true });
  }

  readonly #onCallerAbort = () => this.#controller.abort(this.#caller?.reason);

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Whether the caller's signal ended the request (not the deadline). */
  get callerGaveUp(): boolean {
    return !this.expired && this.#caller?.aborted === true;
  }

  renew(ms = this.#ms): void {
    clearTimeout(this.#timer);
    this.lastMs = ms;
    this.#timer = setTimeout(() => {
      this.expired = true;
      this.#controller.abort(new DOMException(`no progress for ${ms} ms`, "TimeoutError"));
    }, ms);
  }

  clear(): void {
    clearTimeout(this.#timer);
    this.#caller?.removeEventListener("abort", this.#onCallerAbort);
  }
}

/** A server answering a file's URL by redirecting to `URL/` is showing a directory. */
export function isDirectoryRedirect(response: Response, url: string): boolean {
  if (!response.redirected) return false;
  const path = (u: string) => new URL(u).pathname;
  return path(response.url) === `${path(url)}/`;
}

/** Parses `Content-Range: bytes a-b/total` (or `bytes * /total`); total is null for "*". */
export function parseContentRange(
  header: string | null,
): { start?: number; end: number; total: number | null } | null {
  const m = header ? /^bytes (?:(\d+)-(\d+)|\*)\/(\d+|\*)$/.exec(header.trim()) : null;
  if (!m) return null;
  const total = m[3] === "*" ? null : Number(m[3]);
  if (m[1] === undefined) return { end: -1, total };
  return { start: Number(m[1]), end: Number(m[2]), total };
}

/** The most of an error answer that is read for its explanation. */
const _REASON_BYTES = 4096;

/** The server's explanation of a failure: vat serve's `{"error"}` or a short text. */
export async function reasonOf(response: Response): Promise<string> {
  let text: string;
  try {
    const head = response.body ? await readStreamHead(response.body, _REASON_BYTES) : null;
    text = new TextDecoder().decode(head ?? new Uint8Array(0)).trim();
  } catch {
    return "";
  }
  try {
    const error = JSON.parse(text)?.error;
    if (typeof error === "string") return error;
  } catch {
    // Not JSON: a static server's page.
  }
  return response.headers.get("content-type")?.startsWith("text/plain") ? text.slice(0, 300) : "";
}

export async function discardBody(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => {});
}

/**
 * The error for an exchange that failed before an answer (`what`: "GET KEY at
 * LOCATION"): the caller's own cancellation as it is, a stall past the deadline or a
 * lost connection as a `TransientError`, anything else as it was.
 */
export function networkError(err: unknown, what: string, deadline: Deadline): unknown {
  if (deadline.callerGaveUp) return deadline.signal.reason;
  if (deadline.expired) {
    return new TransientError(`${what} timed out (no progress for ${deadline.lastMs} ms)`, {
      cause: err,
    });
  }
  if (
    err instanceof TypeError || err instanceof Deno.errors.Http ||
    err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.ConnectionAborted ||
    err instanceof Deno.errors.UnexpectedEof
  ) {
    return new TransientError(`${what} failed: ${err.message}`, { cause: err });
  }
  return err;
}

/**
 * The error for an unexpected status other than not-found (`what`: "METHOD URL");
 * reads (and so releases) the body. A refusal (401, 403) gets `hint` when the server
 * does not say why; 429 and 5xx are transient, with the server's `Retry-After`.
 */
export async function statusError(
  response: Response,
  what: string,
  hint: string,
): Promise<VatError> {
  const reason = await reasonOf(response);
  const status = response.status;
  const because = reason ? `: ${reason}` : "";
  if (status === 401 || status === 403) {
    // vat serve says why and what to do; a static server's page rarely does.
    return new PermanentError(`${what} was refused (${status})${because || `; ${hint}`}`);
  }
  if (status === 507) return new PermanentError(`${what}: the server is out of space${because}`);
  if (status === 429 || status >= 500) {
    return new TransientError(`${what} failed (${status})${because}`, {
      status,
      retryAfterMs: parseRetryAfter(response.headers.get("retry-after")),
    });
  }
  return new ProtocolError(`${what} answered ${status}${because}`);
}
