/**
 * Turns a repository location given by a user into a `Store`: a local path or
 * `file://` URL, `http(s)://...`, or `s3://bucket/prefix` (docs/FORMAT.md,
 * "Transports"), wrapped in a `RetryingStore` (docs/FORMAT.md, "Retries").
 *
 * @module
 */

import type { SigningKey } from "../auth/signing_key.ts";
import { FileStore } from "./store_file.ts";
import type { Store } from "./store.ts";
import type { S3UrlOptions } from "./store_s3.ts";
import { RetryingStore, type RetryPolicy } from "./store_retrying.ts";

/** Options that some transports need. */
export interface OpenStoreOptions {
  /** Signs writes to `vat serve`. */
  signingKey?: SigningKey;
  /** S3 endpoint, region and credentials (default: the AWS_* environment variables). */
  s3?: S3UrlOptions;
  /** How failed calls are retried (default: `RetryingStore`'s policy); false: never. */
  retry?: RetryPolicy | false;
}

/**
 * Opens the store behind `location`. Opening is not retried (an HTTP store asks its
 * server once what it is, and fails with `TransientError` if nothing answers); every
 * call on the store is.
 */
export async function openStore(location: string, options: OpenStoreOptions = {}): Promise<Store> {
  const transport = await _openTransport(location, options);
  return options.retry === false ? transport : new RetryingStore(transport, options.retry);
}

async function _openTransport(location: string, options: OpenStoreOptions): Promise<Store> {
  if (/^https?:\/\//.test(location)) {
    const { openHttpStore } = await import("./store_http.ts");
    return await openHttpStore(location, { signingKey: options.signingKey });
  }
  if (location.startsWith("s3://")) {
    const { parseS3Url, S3Store } = await import("./store_s3.ts");
    return new S3Store(parseS3Url(location, options.s3));
  }
  const path = location.startsWith("file://")
    ? decodeURIComponent(new URL(location).pathname)
    : location;
  return new FileStore(path);
}
