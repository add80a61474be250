import assert from "node:assert/strict";
import type { DiskHeatMap } from "../api/wire_types.ts";
import { formatHeatMap } from "./stats_command.ts";

Deno.test("formatHeatMap() shows each region's strongest use and the boot trace under it", () => {
  const zeros = () => new Array(8).fill(0);
  const disk: DiskHeatMap = {
    disk: "system",
    sizeBytes: 8 * 65536,
    chunkBytes: 65536,
    regionBytes: 65536,
    regions: 8,
    readBytes: [4096, 4096, 0, 0, 0, 0, 0, 0],
    writtenBytes: [0, 0, 0, 0, 0, 0, 0, 512],
    fetchedChunks: [0, 1, 0, 0, 0, 0, 0, 0],
    storedChunks: [1, 1, 1, 1, 0, 1, 1, 1],
    cachedChunks: [1, 1, 1, 0, 0, 0, 1, 0],
    traceChunks: [1, 1, 0, 0, 0, 0, 0, 0],
  };
  const lines = formatHeatMap(disk);
  assert.equal(
    lines[0],
    "system: 512.0 KiB, 64.0 KiB per character; read 8.0 KiB, written 512 B, 1 chunks fetched, " +
      "4 of 7 chunks cached",
  );
  assert.equal(lines[1], "       0 B |rF#. .#W|");
  assert.equal(lines[2], "            ^^");
  assert.equal(formatHeatMap({ ...disk, traceChunks: zeros() }).length, 2);
});
