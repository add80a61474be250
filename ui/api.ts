/// <reference lib="dom" />
/**
 * The UI's calls to the daemon's API, through Hono's typed client. The session cookie
 * goes along by itself (same origin); every failure becomes an `ApiError` whose message
 * says what failed, in words (never a stack trace).
 *
 * @module
 */

import { hc } from "hono/client";
import type { ApiApp } from "../vat/api/api_app.ts";
import type {
  ApplianceHeatMap,
  ApplianceStatus,
  BackupStatus,
  DiskHeatMap,
  SnapshotEntry,
} from "../vat/api/wire_types.ts";

export type { ApplianceHeatMap, ApplianceStatus, BackupStatus, DiskHeatMap, SnapshotEntry };

/** The typed client of this page's daemon. */
export const api = hc<ApiApp>(location.origin);

/** A failed API call: `status` is the HTTP status (0 when the daemon did not answer). */
export class ApiError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

/** What `call` reads of a response (the typed client's responses are not `Response`s). */
export interface ResponseLike {
  ok: boolean;
  status: number;
  headers: Headers;
  json(): Promise<unknown>;
  text(): Promise<string>;
}

/** Awaits a call and returns its JSON, or throws an `ApiError` saying `what` failed. */
export async function call<T>(what: string, response: Promise<ResponseLike>): Promise<T> {
  let res: ResponseLike;
  try {
    res = await response;
  } catch {
    throw new ApiError(
      `${what} failed: the VAT daemon did not answer; check that it still runs ` +
        "(vat status), then try again",
      0,
    );
  }
  const type = res.headers.get("content-type") ?? "";
  const body = type.includes("json") ? await res.json().catch(() => null) : await res.text();
  if (res.ok) return body as T;
  // The daemon's errors are `{"error"}` saying what failed; anything else (a proxy's
  // page, a crash) is not shown as it is.
  const reason = (body as { error?: string } | null)?.error ??
    `the daemon answered ${res.status}; try again, and see the daemon's log if it persists`;
  throw new ApiError(`${what} failed: ${reason}`, res.status);
}
