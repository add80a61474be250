/**
 * `vat stats NAME`: the access heat map of a running appliance's disks, as text (one
 * character per region) or as JSON.
 *
 * @module
 */

import { connectDaemon, expectOk } from "../api/api_client.ts";
import type { ApplianceHeatMap, DiskHeatMap } from "../api/wire_types.ts";
import { UsageError } from "../errors.ts";
import { formatBytes } from "../progress.ts";
import { stateDir } from "../state_dir.ts";
import { parseFlags, printJson } from "./args.ts";
import type { Command } from "./command.ts";

/** Regions per printed line. */
const _LINE_REGIONS = 64;

/**
 * One character per region, the strongest that applies: `W` written, `F` fetched from
 * the repository, `r` read from the cache, `#` all cached, `+` partly cached, `.` not
 * cached, a space for a region the version stores nothing in (all zeroes). Under each
 * line, `^` marks the regions the boot trace reads.
 */
export function formatHeatMap(disk: DiskHeatMap): string[] {
  const cells: string[] = [];
  for (let r = 0; r < disk.regions; r++) {
    cells.push(
      disk.writtenBytes[r] > 0
        ? "W"
        : disk.fetchedChunks[r] > 0
        ? "F"
        : disk.readBytes[r] > 0
        ? "r"
        : disk.storedChunks[r] === 0
        ? " "
        : disk.cachedChunks[r] === disk.storedChunks[r]
        ? "#"
        : disk.cachedChunks[r] > 0
        ? "+"
        : ".",
    );
  }
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
  const lines = [
    `${disk.disk}: ${formatBytes(disk.sizeBytes)}, ${
      formatBytes(disk.regionBytes)
    } per character; read ${formatBytes(sum(disk.readBytes))}, written ${
      formatBytes(sum(disk.writtenBytes))
    }, ${sum(disk.fetchedChunks)} chunks fetched, ${sum(disk.cachedChunks)} of ${
      sum(disk.storedChunks)
    } chunks cached`,
  ];
  for (let at = 0; at < disk.regions; at += _LINE_REGIONS) {
    const offset = formatBytes(at * disk.regionBytes).padStart(10);
    lines.push(`${offset} |${cells.slice(at, at + _LINE_REGIONS).join("")}|`);
    const trace = disk.traceChunks.slice(at, at + _LINE_REGIONS).map((n) => n > 0 ? "^" : " ");
    if (trace.includes("^")) lines.push(`${"".padStart(10)}  ${trace.join("").trimEnd()}`);
  }
  return lines;
}

export const statsCommand: Command = {
  name: "stats",
  summary: "what a running appliance reads, writes and fetches, region by region",
  usage: `vat stats NAME [--state DIR] [--json]

The access heat map of a running appliance's disks: one character per region of each
disk, the strongest that applies: W written, F fetched from the repository, r read
from the cache, # all cached, + partly cached, . not cached, blank for regions the
version stores nothing in (all zeroes). ^ marks where the version's boot trace reads.
--json gives the counters per region: readBytes, writtenBytes, fetchedChunks,
storedChunks, cachedChunks, traceChunks.`,
  async run(args) {
    const { values, positionals } = parseFlags("stats", args, {
      state: { type: "string" },
      json: { type: "boolean" },
    });
    if (positionals.length !== 1) throw new UsageError("stats: give one appliance NAME");
    const client = await connectDaemon(stateDir(values.state));
    const map = await expectOk<ApplianceHeatMap>(
      client.api.appliances[":name"].stats.$get({ param: { name: positionals[0] } }),
    );
    if (values.json) {
      printJson(map);
      return 0;
    }
    if (map.version === null) {
      console.log(`${map.name} is not running: it has no heat map`);
      return 0;
    }
    console.log(`${map.name}, version ${map.version}`);
    for (const disk of map.disks) for (const line of formatHeatMap(disk)) console.log(line);
    return 0;
  },
};
