/**
 * The daemon's config file, `config.json` in the state directory (optional). Flags
 * override it; it overrides the built-in defaults.
 *
 * ```json
 * { "port": 8460, "hostname": "127.0.0.1", "cacheSize": "20G", "prefetchLimit": "1M",
 *   "accel": "auto" }
 * ```
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { parseSize } from "../progress.ts";
import { type AccelSetting, parseAccelSetting } from "../vmm/accelerator.ts";

/** What the config file may set. */
export interface DaemonConfig {
  port?: number;
  hostname?: string;
  cacheBytes?: number;
  /** The background prefetcher's bandwidth cap, bytes per second (0: off). */
  prefetchLimitBytesPerSecond?: number;
  /** What guests run on: `auto`, `kvm` or `tcg`. */
  accel?: AccelSetting;
}

const KNOWN = ["port", "hostname", "cacheSize", "prefetchLimit", "accel"];

/** Reads `STATE/config.json`; an absent file is an empty config. */
export async function readDaemonConfig(stateDir: string): Promise<DaemonConfig> {
  const path = `${stateDir}/config.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return {};
    throw err;
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new UsageError(`${path} must hold a JSON object`);
  }
  const unknown = Object.keys(raw).filter((k) => !KNOWN.includes(k));
  if (unknown.length) {
    throw new UsageError(
      `${path}: unknown settings ${unknown.join(", ")} (known: ${KNOWN.join(", ")})`,
    );
  }
  const config: DaemonConfig = {};
  if (raw.port !== undefined) {
    if (!Number.isInteger(raw.port) || (raw.port as number) < 0 || (raw.port as number) > 65535) {
      throw new UsageError(`${path}: "port" must be a port number`);
    }
    config.port = raw.port as number;
  }
  if (raw.hostname !== undefined) {
    if (typeof raw.hostname !== "string") {
      throw new UsageError(`${path}: "hostname" must be a string`);
    }
    config.hostname = raw.hostname;
  }
  if (raw.cacheSize !== undefined) {
    config.cacheBytes = parseSize(String(raw.cacheSize), `${path}: "cacheSize"`);
  }
  if (raw.prefetchLimit !== undefined) {
    config.prefetchLimitBytesPerSecond = parseSize(
      String(raw.prefetchLimit),
      `${path}: "prefetchLimit"`,
    );
  }
  if (raw.accel !== undefined) {
    config.accel = parseAccelSetting(String(raw.accel), `${path}: "accel"`);
  }
  return config;
}
