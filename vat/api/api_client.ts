/**
 * The typed client of the daemon's API, for the CLI: it finds the daemon of a state
 * directory through `daemon.json` and authenticates with the token beside it.
 *
 * @module
 */

import { hc } from "hono/client";
import { errorOfHttpStatus, NotFoundError, VatError } from "../errors.ts";
import { readDaemonInfo } from "./daemon_info.ts";
import type { ApiApp } from "./api_app.ts";

/** A client bound to one running daemon. */
export type ApiClient = ReturnType<typeof hc<ApiApp>>;

/** Connects to the daemon of `stateDir`; a clear error when none runs there. */
export async function connectDaemon(stateDir: string): Promise<ApiClient> {
  const info = await readDaemonInfo(stateDir);
  if (!info) {
    throw new NotFoundError(
      `no vat daemon is running for ${stateDir} (start one with: vat --headless --state ${stateDir})`,
    );
  }
  const token = (await Deno.readTextFile(`${stateDir}/token`)).trim();
  return hc<ApiApp>(info.url, { headers: { authorization: `Bearer ${token}` } });
}

/** What `expectOk` reads of a response (the typed client's responses are not `Response`s). */
interface ResponseLike {
  ok: boolean;
  status: number;
  headers: Headers;
  json(): Promise<unknown>;
  text(): Promise<string>;
}

/** The JSON of a response, or its error as the matching `VatError`. */
export async function expectOk<T>(response: Promise<ResponseLike> | ResponseLike): Promise<T> {
  let res: ResponseLike;
  try {
    res = await response;
  } catch (err) {
    throw new VatError(`the vat daemon did not answer: ${(err as Error).message}`, { cause: err });
  }
  const type = res.headers.get("content-type") ?? "";
  const body = type.includes("json") ? await res.json() : await res.text();
  if (res.ok) return body as T;
  const message = (body as { error?: string })?.error ?? `the daemon answered ${res.status}`;
  throw errorOfHttpStatus(res.status, message);
}
