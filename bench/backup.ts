/**
 * The backup benchmark (issue 5): vat's continuous backup of a user disk replaying a
 * synthetic office-like write trace (`backup/trace.ts`) over an emulated 384 kbit/s
 * uplink, against restic backing the same disk image up at the same idle points. All
 * in-process: no QEMU, no network.
 *
 * 1. Prepared state: the user's files on a 2 GiB user disk (a sparse `CowOverlay` over
 *    an empty base) and the same bytes in a raw image; backed up once by vat and restic.
 * 2. Live: the session replayed in compressed time (`backup/live_run.ts`) with the
 *    daemon's snapshots (every five simulated minutes and at each idle point) and the
 *    upload through a `RateLimiter` of 48 000 bytes/s that every byte written to the
 *    data repository passes (`backup/link_store.ts`: chunks, indexes, manifests,
 *    leases). Reported: bytes still pending when the user goes idle (p50/p90/max; the
 *    paper's traces: mostly little, 35 MB at worst), and bytes sent against the bytes
 *    the session dirtied.
 * 3. Throughput: the session's writes back to back into the user disk with vat's
 *    snapshots fired where the daemon fires them, against the same writes with none.
 * 4. Peer: at every idle point, vat's snapshot and upload (no link cap) and
 *    `restic backup` of the raw image into a local repository: bytes added, wall time,
 *    CPU.
 *
 * The live replay runs several traces: normal office days from `--seeds` (default
 * 8,3,5) and heavy days from `--heavy-seeds` (default 8), with snapshots every
 * `--snapshot-interval-min` (default 5, the daemon's) and the user idle after
 * `--idle-min` without input (default 3: independent of the interval), over the uplink
 * with `--rtt-ms` (default 40) per write. Throughput and restic use the first trace.
 *
 * Run: `deno run -A bench/backup.ts [--quick] [--seeds N,M] [--heavy-seeds N]` (or
 * `deno task bench backup`). Installs restic and /usr/bin/time (bench/peers.ts). A full
 * run takes an hour or more (the heavy day's upload at 48 000 B/s), `--quick` (one short
 * trace) a few minutes. Results: printed, and bench/out/backup.txt and
 * bench/out/backup.json. Work files live in .cache/bench/ and are removed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { replayLive } from "./backup/live_run.ts";
import {
  type PeerPoint,
  prepareState,
  replayPeers,
  replayWrites,
  snapshotPlan,
  type ThroughputRun,
} from "./backup/replays.ts";
import { CHUNK_BYTES, closeVat, copyState, openVat } from "./backup/rig.ts";
import { generateTrace, payloadOf, type TraceShape, traceTotals } from "./backup/trace.ts";
import { ensureBenchPeers } from "./peers.ts";
import { type BenchFigure, type BenchTable, markdownTable, writeBenchResult } from "./results.ts";

const MiB = 1024 * 1024;
const MINUTE_MS = 60_000;
/** 384 kbit/s, the paper's DSL uplink. */
const UPLINK_BYTES_PER_SECOND = 48_000;

const _ROOT = new URL("../", import.meta.url).pathname;
const _WORK_PARENT = `${_ROOT}.cache/bench`;
const _OUT_DIR = `${_ROOT}bench/out`;

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean" },
    seed: { type: "string" },
    seeds: { type: "string" },
    "heavy-seeds": { type: "string" },
    "rtt-ms": { type: "string", default: "40" },
    "snapshot-interval-min": { type: "string", default: "5" },
    "idle-min": { type: "string", default: "3" },
  },
});

function _number(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} ${text}: not a number`);
  return n;
}

/** The daemon's default snapshot interval (vat/backup/backups.ts), or --snapshot-interval-min. */
const SNAPSHOT_INTERVAL_MS = _number("snapshot-interval-min", flags["snapshot-interval-min"]!) *
  MINUTE_MS;
/** When a user counts as idle: independent of the snapshot interval (--idle-min). */
const IDLE_THRESHOLD_MS = _number("idle-min", flags["idle-min"]!) * MINUTE_MS;
/** The uplink's round trip, waited once per write (bench/backup/link_store.ts). */
const UPLINK_RTT_MS = _number("rtt-ms", flags["rtt-ms"]!);

/**
 * The trace of a full run: a ten-hour working day. The wall time is about the bytes
 * uploaded at 48 000 B/s; the default seed makes a day whose upload fits 15 minutes.
 */
const _FULL: TraceShape = {
  seed: Number(flags.seed ?? 8),
  diskBytes: 2048 * MiB,
  sessionMs: 10 * 60 * MINUTE_MS,
  initialBytes: 256 * MiB,
  idleThresholdMs: IDLE_THRESHOLD_MS,
  activeMedianMs: 25 * MINUTE_MS,
  activeSigma: 0.8,
  awayMedianMs: 10 * MINUTE_MS,
  awaySigma: 1,
  thinkMeanMs: 2 * MINUTE_MS,
  fileMedianBytes: 48 * 1024,
  fileSigma: 1.6,
  fileMaxBytes: 48 * MiB,
  mix: { create: 0.25, save: 0.45, mail: 0.2, index: 0.1 },
};
/** A short session with short periods, so that it has idle points and fits two minutes. */
const _QUICK: TraceShape = {
  ..._FULL,
  seed: Number(flags.seed ?? 7),
  diskBytes: 1024 * MiB,
  sessionMs: 40 * MINUTE_MS,
  initialBytes: 64 * MiB,
  activeMedianMs: 8 * MINUTE_MS,
  awayMedianMs: 5 * MINUTE_MS,
};
/**
 * A heavy day: longer working stretches and larger files (the paper's worst idle point
 * had 35 MB pending); its upload takes far longer than a normal day's.
 */
const _HEAVY: TraceShape = {
  ..._FULL,
  activeMedianMs: 45 * MINUTE_MS,
  fileMedianBytes: 160 * 1024,
  fileMaxBytes: 96 * MiB,
  mix: { create: 0.4, save: 0.4, mail: 0.15, index: 0.05 },
};

/** The traces of the live replay: normal days from several seeds, and heavy days. */
function _traceShapes(): { label: string; shape: TraceShape }[] {
  const list = (s: string | undefined, dflt: string) =>
    (s ?? dflt).split(",").filter((x) => x).map((x) => _number("seeds", x));
  if (flags.quick) {
    return list(flags.seeds ?? flags.seed, "7").map((seed) => ({
      label: `quick, seed ${seed}`,
      shape: { ..._QUICK, seed },
    }));
  }
  return [
    ...list(flags.seeds ?? flags.seed, "8,3,5").map((seed) => ({
      label: `office day, seed ${seed}`,
      shape: { ..._FULL, seed },
    })),
    ...list(flags["heavy-seeds"], "8").map((seed) => ({
      label: `heavy day, seed ${seed}`,
      shape: { ..._HEAVY, seed },
    })),
  ];
}

/** Throughput replays per variant (the median counts). */
const _REPS = flags.quick ? 1 : 3;

function _log(msg: string): void {
  console.error(`[backup bench] ${msg}`);
}

async function main(): Promise<void> {
  await ensureBenchPeers(["restic", "/usr/bin/time"]);
  const shapes = _traceShapes();
  const shape = shapes[0].shape;
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const trace = generateTrace(shape);
  const totals = traceTotals(trace, CHUNK_BYTES);
  await Deno.mkdir(_WORK_PARENT, { recursive: true });
  const work = await Deno.makeTempDir({ dir: _WORK_PARENT, prefix: "backup-" });
  const cleanUp = () => Deno.removeSync(work, { recursive: true });
  const onSignal = () => {
    cleanUp();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    const lives: _LiveRun[] = [];
    let initial: PeerPoint | null = null;
    for (const { label, shape: s } of shapes) {
      const t = generateTrace(s);
      const tt = traceTotals(t, CHUNK_BYTES);
      _log(
        `${label}: ${tt.bursts} bursts, ${tt.idlePoints} idle points, ` +
          `${_mb(tt.writtenBytes)} MB written in ${(s.sessionMs / 3_600_000).toFixed(1)} h`,
      );
      const seedDir = `${work}/seed-${lives.length}`;
      _log(`prepared state: ${_mb(s.initialBytes)} MB of user files, backed up once`);
      const prepared = await prepareState(seedDir, t);
      initial ??= prepared;
      _log(
        `live: ${label} over ${UPLINK_BYTES_PER_SECOND * 8 / 1000} kbit/s, ` +
          `${UPLINK_RTT_MS} ms RTT, compressed time`,
      );
      await copyState(seedDir, `${work}/live`);
      const liveRig = await openVat(
        `${work}/live`,
        s.diskBytes,
        UPLINK_BYTES_PER_SECOND,
        UPLINK_RTT_MS,
      );
      try {
        const live = await replayLive(liveRig, t, {
          snapshotIntervalMs: SNAPSHOT_INTERVAL_MS,
          dirtyChunks: tt.dirtyChunks,
          log: _log,
        });
        lives.push({
          label,
          shape: s,
          totals: { ...tt, dirtyChunks: tt.dirtyChunks.length },
          live,
        });
      } finally {
        await closeVat(liveRig);
        await Deno.remove(`${work}/live`, { recursive: true });
      }
      if (lives.length > 1) await Deno.remove(seedDir, { recursive: true });
    }
    const seedDir = `${work}/seed-0`;

    _log(`throughput and restic: on the first trace (${shapes[0].label})`);
    const plan = snapshotPlan(trace, SNAPSHOT_INTERVAL_MS);
    const payloads = plan.writes.map(payloadOf);
    const runs: ThroughputRun[] = [];
    for (let rep = 0; rep < _REPS; rep++) {
      for (const withBackup of rep % 2 ? [true, false] : [false, true]) {
        runs.push(
          await replayWrites(seedDir, `${work}/tp`, shape.diskBytes, plan, payloads, withBackup),
        );
      }
    }

    _log("peer: vat and restic at every idle point");
    const peers = await replayPeers(seedDir, `${work}/peer`, trace, _log);

    const result = {
      shape,
      uplinkBytesPerSecond: UPLINK_BYTES_PER_SECOND,
      uplinkRttMs: UPLINK_RTT_MS,
      snapshotIntervalMs: SNAPSHOT_INTERVAL_MS,
      idleThresholdMs: IDLE_THRESHOLD_MS,
      chunkBytes: CHUNK_BYTES,
      totals: { ...totals, dirtyChunks: totals.dirtyChunks.length },
      initial: initial!,
      live: lives[0].live,
      lives,
      throughput: runs,
      peers,
      runS: (performance.now() - started) / 1000,
    };
    const report = _report(result);
    console.log(report);
    await Deno.mkdir(_OUT_DIR, { recursive: true });
    await Deno.writeTextFile(`${_OUT_DIR}/backup.txt`, report + "\n");
    await Deno.writeTextFile(`${_OUT_DIR}/backup.json`, JSON.stringify(result, null, 2) + "\n");
    await writeBenchResult({
      bench: "backup",
      command: `deno run -A bench/backup.ts ${Deno.args.join(" ")}`.trimEnd(),
      startedAt,
      finishedAt: new Date().toISOString(),
      short: !!flags.quick,
      ..._benchTables(result),
    });
    console.log(`\nresults: ${_OUT_DIR}/backup.txt, backup.json, backup.result.json`);
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    cleanUp();
  }
}

interface _LiveRun {
  label: string;
  shape: TraceShape;
  totals: Record<string, number>;
  live: Awaited<ReturnType<typeof replayLive>>;
}

/** The README's backup tables (bench/results.ts). */
function _benchTables(r: _Result & { lives: _LiveRun[] }) {
  const figures: Record<string, BenchFigure> = {};
  const rows: string[][] = [[
    "trace",
    "MB written",
    "idle points",
    "pending at idle p50/p90/max MB",
    "at the last input p50/p90/max MB",
    "sent all / dirty chunks",
  ]];
  for (const l of r.lives) {
    const pending = l.live.idlePoints.map((p) => p.pendingBytes);
    const last = l.live.idlePoints.map((p) => p.pendingAtLastInputBytes);
    const sent = l.live.sent.chunks + l.live.sent.versions + l.live.sent.other;
    const trio = (xs: number[]) =>
      `${_mb(_pct(xs, 50))} / ${_mb(_pct(xs, 90))} / ${_mb(Math.max(0, ...xs))}`;
    rows.push([
      l.label,
      _mb(l.totals.writtenBytes),
      String(l.live.idlePoints.length),
      `${trio(pending)} (${pending.filter((v) => v <= 0).length} at zero)`,
      trio(last),
      (sent / l.totals.distinctChunkBytes).toFixed(2),
    ]);
    figures[`pendingMax_${l.label}`] = { value: Math.max(0, ...pending), unit: "B" };
  }
  const sum = (f: (p: PeerPoint) => number) => r.peers.reduce((s, p) => s + f(p), 0);
  const vatBytes = sum((p) => p.vat.repoGrowthBytes);
  const rsGrowth = sum((p) => p.restic.repoGrowthBytes);
  const vatWall = sum((p) => p.vat.wallS);
  const rsWall = sum((p) => p.restic.wallS);
  figures.vatRepoBytes = { value: vatBytes, unit: "B" };
  figures.resticRepoGrowthBytes = { value: rsGrowth, unit: "B" };
  const tables: BenchTable[] = [{
    title: "Backup: pending at idle",
    method: `live replay in compressed time over ${UPLINK_BYTES_PER_SECOND * 8 / 1000} kbit/s ` +
      `with ${UPLINK_RTT_MS} ms RTT per write; snapshots every ` +
      `${SNAPSHOT_INTERVAL_MS / MINUTE_MS} min and at idle, idle after ` +
      `${IDLE_THRESHOLD_MS / MINUTE_MS} min without input (independent settings); synthetic ` +
      "traces (bench/backup/trace.ts), not recorded users; leaves out HTTP/TCP overhead and " +
      "the guest's own CPU.",
    markdown: markdownTable(rows),
  }, {
    title: "Backup: against restic",
    method: `at the ${r.peers.length} idle points of the first trace, vat's snapshot and upload ` +
      "(no link cap) against `restic backup` of the raw image into a local repository; " +
      "both figures are the repository directory's growth (vat's bytes sent are in backup.txt).",
    markdown: markdownTable([
      ["measure", "vat", "restic", "vat / restic"],
      ["repository growth, MB", _mb(vatBytes), _mb(rsGrowth), (vatBytes / rsGrowth).toFixed(2)],
      ["wall s", vatWall.toFixed(1), rsWall.toFixed(1), (vatWall / rsWall).toFixed(2)],
    ]),
  }];
  return { figures, tables };
}

// --- the report ------------------------------------------------------------------------

type _Result = {
  lives: _LiveRun[];
  shape: TraceShape;
  totals: ReturnType<typeof traceTotals> | Record<string, number>;
  initial: PeerPoint;
  live: Awaited<ReturnType<typeof replayLive>>;
  throughput: ThroughputRun[];
  peers: PeerPoint[];
  runS: number;
};

function _report(r: _Result): string {
  const out: string[] = [];
  const t = r.totals as ReturnType<typeof traceTotals>;
  const live = r.live;
  out.push(
    `Backup of a ${r.shape.diskBytes / MiB} MiB user disk (${CHUNK_BYTES / 1024} KiB chunks) ` +
      `holding ${_mb(r.shape.initialBytes)} MB of files; a ` +
      `${(r.shape.sessionMs / 3_600_000).toFixed(1)} h session: ${t.bursts} bursts, ` +
      `${t.idlePoints} idle points; MB = 10^6 bytes`,
  );
  out.push(
    `Live replay over 384 kbit/s (48 000 B/s, in-process RateLimiter on every byte written to ` +
      `the data repository, ${UPLINK_RTT_MS} ms RTT per write; snapshots every ` +
      `${SNAPSHOT_INTERVAL_MS / MINUTE_MS} min, idle after ${IDLE_THRESHOLD_MS / MINUTE_MS} min) ` +
      `of ${r.lives.length} trace(s), the first shown in detail: ` +
      `${(live.simulatedS / 3600).toFixed(1)} h simulated in ` +
      `${live.wallS.toFixed(0)} s wall, ${live.snapshots} snapshots`,
  );

  const pending = live.idlePoints.map((p) => p.pendingBytes);
  const unsent = live.idlePoints.map((p) => p.unsentBytes);
  const drained = live.idlePoints.filter((p) => p.drainS !== null);
  out.push("\nPending when the user goes idle (paper: mostly little; 35 MB at worst)\n");
  out.push(..._table([
    ["measure", "p50 MB", "p90 MB", "max MB", "zero"],
    _pendingRow("vat backup status", pending),
    _pendingRow("unsent (counted apart)", unsent),
    _pendingRow(
      `at the last input (${IDLE_THRESHOLD_MS / MINUTE_MS} min before)`,
      live.idlePoints.map((p) => p.pendingAtLastInputBytes),
    ),
  ]));
  out.push(
    `  drained before the user came back: ${drained.length} of ${live.idlePoints.length}; ` +
      `drain time p50 ${_pct(drained.map((p) => p.drainS!), 50).toFixed(0)} s, ` +
      `max ${Math.max(0, ...drained.map((p) => p.drainS!)).toFixed(0)} s`,
  );
  if (pending.some((p, i) => Math.abs(p - unsent[i]) > 64 * 1024)) {
    out.push(
      "  note: `vat backup status` and the independent count differ at some idle points",
    );
  }

  const sent = live.sent;
  const sentAll = sent.chunks + sent.versions + sent.other;
  out.push("\nBytes sent against bytes dirtied (live replay)\n");
  out.push(..._table([
    ["", "MB", "sent chunks / this", "sent all / this"],
    [
      "guest writes (every rewrite)",
      _mb(t.writtenBytes),
      ..._ratios(sent.chunks, sentAll, t.writtenBytes),
    ],
    [
      "distinct 4 KiB blocks written",
      _mb(t.distinctBlockBytes),
      ..._ratios(sent.chunks, sentAll, t.distinctBlockBytes),
    ],
    [
      "distinct dirty 64 KiB chunks",
      _mb(t.distinctChunkBytes),
      ..._ratios(sent.chunks, sentAll, t.distinctChunkBytes),
    ],
    [
      "sum of snapshots' changed chunks",
      _mb(live.snapshotChangedBytes),
      ..._ratios(sent.chunks, sentAll, live.snapshotChangedBytes),
    ],
    [
      "end state only, sealed (ideal)",
      _mb(live.endStateSealedBytes),
      ..._ratios(sent.chunks, sentAll, live.endStateSealedBytes),
    ],
  ]));
  out.push(
    `  sent: chunks ${_mb(sent.chunks)} MB, indexes and manifests ${_mb(sent.versions)} MB, ` +
      `leases and the rest ${_mb(sent.other)} MB (${sent.puts} writes)`,
  );

  const pick = (withBackup: boolean) => r.throughput.filter((x) => x.withBackup === withBackup);
  const without = _median(pick(false).map((x) => x.bytes / x.wallS));
  const withB = _median(pick(true).map((x) => x.bytes / x.wallS));
  const paced = live.guestWriteBytes / live.guestWriteS;
  out.push(
    `\nGuest write throughput into the user disk (the session's ${_mb(t.writtenBytes)} MB, ` +
      `queue depth 1; time in writes only; median of ${pick(false).length})\n`,
  );
  out.push(..._table([
    ["", "MB/s", "vs without"],
    ["without backup (no snapshots), back to back", _mb(without), "1.00"],
    [
      `with snapshots, back to back (${pick(true)[0]?.snapshots ?? 0} taken)`,
      _mb(withB),
      (withB / without).toFixed(2),
    ],
    ["live replay (snapshots and upload running)", _mb(paced), (paced / without).toFixed(2)],
  ]));

  const sum = (f: (p: PeerPoint) => number) => r.peers.reduce((s, p) => s + f(p), 0);
  const vatBytes = sum((p) => p.vat.bytes);
  const vatWall = sum((p) => p.vat.wallS);
  const vatCpu = sum((p) => p.vat.cpuS);
  const rsAdded = sum((p) => p.restic.dataAddedBytes);
  const rsGrowth = sum((p) => p.restic.repoGrowthBytes);
  const rsWall = sum((p) => p.restic.wallS);
  const rsCpu = sum((p) => p.restic.cpuS);
  out.push(
    `\nvat against restic 0.14 (local repository) at the ${r.peers.length} idle points ` +
      `(vat: snapshot + upload, no link cap; restic: backup of the raw image)\n`,
  );
  out.push(..._table([
    ["", "vat", "restic", "vat / restic"],
    [
      "bytes added, MB (restic: data_added)",
      _mb(vatBytes),
      _mb(rsAdded),
      (vatBytes / rsAdded).toFixed(2),
    ],
    [
      "repository growth, MB",
      _mb(sum((p) => p.vat.repoGrowthBytes)),
      _mb(rsGrowth),
      (sum((p) => p.vat.repoGrowthBytes) / rsGrowth).toFixed(2),
    ],
    ["wall s", vatWall.toFixed(1), rsWall.toFixed(1), (vatWall / rsWall).toFixed(2)],
    ["CPU s (user + sys)", vatCpu.toFixed(1), rsCpu.toFixed(1), (vatCpu / rsCpu).toFixed(2)],
    [
      "per idle point, median wall s",
      _median(r.peers.map((p) => p.vat.wallS)).toFixed(2),
      _median(r.peers.map((p) => p.restic.wallS)).toFixed(2),
      "",
    ],
  ]));
  const i = r.initial;
  out.push(
    `  first backup of the files: vat ${_mb(i.vat.bytes)} MB ${i.vat.wallS.toFixed(1)} s ` +
      `${i.vat.cpuS.toFixed(1)} CPU s; restic ${_mb(i.restic.repoGrowthBytes)} MB ` +
      `${i.restic.wallS.toFixed(1)} s ${i.restic.cpuS.toFixed(1)} CPU s`,
  );
  out.push(`\nwhole run: ${r.runS.toFixed(0)} s`);
  return out.join("\n");
}

function _pendingRow(name: string, values: number[]): string[] {
  return [
    name,
    _mb(_pct(values, 50)),
    _mb(_pct(values, 90)),
    _mb(Math.max(...values)),
    `${values.filter((v) => v <= 0).length}/${values.length}`,
  ];
}

function _ratios(chunks: number, all: number, of: number): string[] {
  return [(chunks / of).toFixed(2), (all / of).toFixed(2)];
}

/** The nearest-rank percentile `p` of `values` (0 when there are none). */
function _pct(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

function _median(values: number[]): number {
  return _pct(values, 50);
}

function _mb(bytes: number): string {
  return (bytes / 1e6).toFixed(2);
}

function _table(rows: string[][]): string[] {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  return rows.map((row) =>
    "  " +
    row.map((cell, c) => c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])).join("  ")
      .trimEnd()
  );
}

if (import.meta.main) await main();
