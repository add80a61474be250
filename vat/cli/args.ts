/**
 * Argument helpers shared by the CLI commands: sizes, repository references, and
 * `parseArgs` with vat's error messages.
 *
 * @module
 */

import { parseArgs as nodeParseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../errors.ts";
import type { S3UrlOptions } from "../repo/store_s3.ts";

/** Parses a positive whole number flag. */
export function parseCount(text: string, what: string): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < 1) {
    throw new UsageError(`${what} "${text}" must be a whole number of at least 1`);
  }
  return Number(text);
}

const DURATION_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };

/** Parses "90s", "30m", "12h", "7d" into milliseconds. */
export function parseDuration(text: string, what: string): number {
  const m = /^(\d+)\s*([smhd])$/.exec(text.trim());
  if (!m || Number(m[1]) < 1) {
    throw new UsageError(`${what} "${text}" is not a duration (examples: 90s, 30m, 12h, 7d)`);
  }
  return Number(m[1]) * DURATION_UNITS[m[2]];
}

/** A repository and an optional version: `REPO`, `REPO@N` or `REPO@latest`. */
export interface RepoRef {
  repo: string;
  version: number | "latest";
}

/** Splits `REPO[@N]`. A trailing `@` part that is not a number or "latest" stays in REPO. */
export function parseRepoRef(text: string): RepoRef {
  const m = /^(.*)@(\d+|latest)$/.exec(text);
  if (!m) return { repo: text, version: "latest" };
  return { repo: m[1], version: m[2] === "latest" ? "latest" : Number(m[2]) };
}

/** `node:util` parseArgs, strict, with errors as `UsageError` naming the command. */
export function parseFlags<T extends NonNullable<ParseArgsConfig["options"]>>(
  command: string,
  args: string[],
  options: T,
) {
  try {
    return nodeParseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${command}: ${(err as Error).message} (see: vat ${command} --help)`, {
      cause: err,
    });
  }
}

/** Prints a value as JSON to standard output. */
export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

/** Flags every command that names a repository takes, for S3 repositories. */
export const STORE_FLAGS = {
  "s3-endpoint": { type: "string" },
  "s3-region": { type: "string" },
  "s3-access-key-id": { type: "string" },
  "s3-secret-access-key": { type: "string" },
} as const;

/** The S3 options given by `STORE_FLAGS` (the AWS_* environment fills in the rest). */
export function s3Options(values: Record<string, unknown>): S3UrlOptions {
  return {
    endpoint: values["s3-endpoint"] as string | undefined,
    region: values["s3-region"] as string | undefined,
    accessKeyId: values["s3-access-key-id"] as string | undefined,
    secretAccessKey: values["s3-secret-access-key"] as string | undefined,
  };
}
