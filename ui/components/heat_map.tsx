/** @jsxImportSource preact */
/**
 * The access heat map: one strip per disk, one column per region, drawn on a canvas.
 * A column's base shows how much of the region the cache holds (light grey: nothing
 * stored there; grey: not cached; blue: cached); on top, the guest's use: green where
 * it read, orange where a read had to fetch from the repository, red where it wrote,
 * each stronger the more it did. A tick under a column marks the boot trace's regions.
 *
 * @module
 */

import { useEffect, useRef } from "preact/hooks";
import type { ApplianceHeatMap, DiskHeatMap } from "../api.ts";
import { formatBytes } from "../format.ts";

const _STRIP_HEIGHT = 28;
const _TRACE_HEIGHT = 5;

/** The colours, as [r, g, b]. */
const _EMPTY = [236, 236, 236];
const _UNCACHED = [176, 176, 176];
const _CACHED = [120, 160, 220];
const _READ = [46, 160, 67];
const _FETCHED = [235, 140, 20];
const _WRITTEN = [215, 48, 39];

function _mix(a: number[], b: number[], t: number): string {
  const c = a.map((x, i) => Math.round(x + (b[i] - x) * t));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

/** How strong a count is against the largest of its kind: 0.35 to 1, 0 for none. */
function _strength(value: number, max: number): number {
  return value <= 0 || max <= 0 ? 0 : 0.35 + 0.65 * Math.sqrt(value / max);
}

function _draw(canvas: HTMLCanvasElement, disk: DiskHeatMap): void {
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  const width = canvas.width;
  const column = width / disk.regions;
  ctx.clearRect(0, 0, width, canvas.height);
  const maxRead = Math.max(...disk.readBytes);
  const maxWritten = Math.max(...disk.writtenBytes);
  const maxFetched = Math.max(...disk.fetchedChunks);
  for (let r = 0; r < disk.regions; r++) {
    const stored = disk.storedChunks[r];
    let colour = stored === 0
      ? _mix(_EMPTY, _EMPTY, 0)
      : _mix(_UNCACHED, _CACHED, disk.cachedChunks[r] / stored);
    if (disk.writtenBytes[r] > 0) {
      colour = _mix(_CACHED, _WRITTEN, _strength(disk.writtenBytes[r], maxWritten));
    } else if (disk.fetchedChunks[r] > 0) {
      colour = _mix(_CACHED, _FETCHED, _strength(disk.fetchedChunks[r], maxFetched));
    } else if (disk.readBytes[r] > 0) {
      colour = _mix(_CACHED, _READ, _strength(disk.readBytes[r], maxRead));
    }
    ctx.fillStyle = colour;
    ctx.fillRect(Math.floor(r * column), 0, Math.ceil(column), _STRIP_HEIGHT);
    if (disk.traceChunks[r] > 0) {
      ctx.fillStyle = "#333";
      ctx.fillRect(Math.floor(r * column), _STRIP_HEIGHT + 2, Math.ceil(column), _TRACE_HEIGHT);
    }
  }
}

function _sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** One disk's strip and its totals. */
function _DiskStrip({ disk }: { disk: DiskHeatMap }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (canvas.current) _draw(canvas.current, disk);
  });
  const summary = `read ${formatBytes(_sum(disk.readBytes))}, written ${
    formatBytes(_sum(disk.writtenBytes))
  }, ${_sum(disk.fetchedChunks)} chunks fetched; ${_sum(disk.cachedChunks)} of ${
    _sum(disk.storedChunks)
  } chunks cached`;
  return (
    <figure class="heat-strip" data-testid={`heat-${disk.disk}`}>
      <figcaption>
        <strong>{disk.disk}</strong> ({formatBytes(disk.sizeBytes)}): {summary}
      </figcaption>
      <canvas
        ref={canvas}
        width={768}
        height={_STRIP_HEIGHT + 2 + _TRACE_HEIGHT}
        role="img"
        aria-label={`${disk.disk} disk, ${disk.regions} regions of ${
          formatBytes(disk.regionBytes)
        }: ${summary}`}
      />
    </figure>
  );
}

/** The heat map of a running appliance, or why there is none. */
export function HeatMap({ map, running }: { map: ApplianceHeatMap | null; running: boolean }) {
  return (
    <section class="heat-map" aria-labelledby="heat-title">
      <h3 id="heat-title">What the disks are doing</h3>
      {!running || map === null || map.disks.length === 0
        ? <p class="muted">The heat map shows while the appliance runs.</p>
        : (
          <>
            {map.disks.map((disk) => <_DiskStrip key={disk.disk} disk={disk} />)}
            <p class="legend muted">
              <span class="key" style={{ background: _mix(_EMPTY, _EMPTY, 0) }} /> nothing stored
              {" "}
              <span class="key" style={{ background: _mix(_UNCACHED, _UNCACHED, 0) }} /> not cached
              {" "}
              <span class="key" style={{ background: _mix(_CACHED, _CACHED, 0) }} /> cached{" "}
              <span class="key" style={{ background: _mix(_READ, _READ, 0) }} /> read{" "}
              <span class="key" style={{ background: _mix(_FETCHED, _FETCHED, 0) }} /> fetched{" "}
              <span class="key" style={{ background: _mix(_WRITTEN, _WRITTEN, 0) }} /> written{" "}
              <span class="key trace" /> boot trace
            </p>
          </>
        )}
    </section>
  );
}
