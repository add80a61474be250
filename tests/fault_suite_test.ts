/**
 * The fault-injection suite (issue 12): `vat` processes killed with SIGKILL at random
 * points, over and over, each kill followed by a restart and a check of the invariants
 * that must survive it. One step per area (the code is in tests/faults/), run in two
 * lanes at once (most of an area's time is spent waiting for processes); the end
 * prints the total. Seeded: `VAT_FAULT_SEED=S` replays a run (see
 * tests/helpers/fault_kill.ts); `VAT_FAULT_AREAS=cache,overlay` runs only those areas;
 * `VAT_FAULT_SCALE=5` kills five times as often (a soak run, not for CI).
 */

import { AREA_RESULTS, type FaultArea, runArea, SUITE_SEED } from "./helpers/fault_kill.ts";
import { publishKills } from "./faults/publish_kills.ts";
import { backupKills } from "./faults/backup_kills.ts";
import { hoardKills } from "./faults/hoard_kills.ts";
import { daemonHasAccelChoice, guestKills } from "./faults/guest_kills.ts";
import { exportKills } from "./faults/export_kills.ts";
import { gcKills } from "./faults/gc_kills.ts";
import { cacheFillKills, overlayKills } from "./faults/nbd_kills.ts";

/** One area: its name, its lane, what it does. */
interface Area {
  name: string;
  what: string;
  lane: 0 | 1;
  run(area: FaultArea): Promise<void>;
  ignore?: string;
}

const MINIMUM_KILLS = 100;

/** `n` kills or rounds, times VAT_FAULT_SCALE. */
function scaled(n: number): number {
  const scale = Number(Deno.env.get("VAT_FAULT_SCALE") ?? "1");
  if (!(scale > 0)) throw new Error(`VAT_FAULT_SCALE must be a positive number`);
  return Math.max(1, Math.round(n * scale));
}

Deno.test({
  name: "fault suite: vat killed with SIGKILL at random points, invariants checked after each",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    console.log(`fault suite: seed ${SUITE_SEED} (replay with VAT_FAULT_SEED=${SUITE_SEED})`);
    // Guests boot only where the daemon can be told to use TCG: some hosts' KVM hangs them.
    const canBootGuests = await daemonHasAccelChoice();
    const areas: Area[] = [
      {
        name: "publish-http",
        what: "vat publish over HTTP to vat serve (the server killed too)",
        lane: 0,
        run: (area) => publishKills(area, { transport: "http", kills: scaled(12) }),
      },
      {
        name: "publish-file",
        what: "vat publish to a file repository",
        lane: 1,
        run: (area) => publishKills(area, { transport: "file", kills: scaled(15) }),
      },
      {
        name: "gc",
        what: "vat repo gc, then a publish that must not wait for the dead run",
        lane: 1,
        run: (area) => gcKills(area, scaled(10)),
      },
      {
        name: "backup",
        what: "snapshot and backup upload of a daemon with --data-repo",
        lane: 1,
        run: (area) => backupKills(area, { rounds: scaled(2), killsPerRound: 5 }),
      },
      {
        name: "cache",
        what: "cache fill with eviction under vat nbd",
        lane: 1,
        run: (area) => cacheFillKills(area, scaled(25)),
      },
      {
        name: "export",
        what: "vat export over an existing image",
        lane: 0,
        run: (area) => exportKills(area, scaled(15)),
      },
      {
        name: "overlay",
        what: "overlay writes and flushes through vat nbd",
        lane: 0,
        run: (area) => overlayKills(area, scaled(25)),
      },
      {
        name: "hoard",
        what: "hoarding over a slow link",
        lane: 0,
        run: (area) => hoardKills(area, { rounds: scaled(2), killsPerRound: 5 }),
      },
      {
        name: "guest",
        what: "a daemon with a running guest",
        lane: 0,
        run: (area) => guestKills(area, scaled(4)),
        ignore: canBootGuests ? undefined : "the daemon has no --accel/VAT_ACCEL to force TCG",
      },
    ];
    const chosen = Deno.env.get("VAT_FAULT_AREAS")?.split(",").map((s) => s.trim());
    const unknown = chosen?.filter((name) => !areas.some((a) => a.name === name)) ?? [];
    if (unknown.length) {
      throw new Error(
        `VAT_FAULT_AREAS names no area ${unknown.join(", ")}; the areas are ${
          areas.map((a) => a.name).join(", ")
        }`,
      );
    }
    const selected = areas.filter((a) => !chosen || chosen.includes(a.name));
    const started = performance.now();
    await Promise.all([0, 1].map(async (lane) => {
      for (const a of selected.filter((a) => a.lane === lane)) {
        await t.step({
          name: `${a.name}: ${a.what}`,
          ignore: a.ignore !== undefined,
          sanitizeOps: false,
          sanitizeResources: false,
          sanitizeExit: false,
          fn: () => runArea(a.name, a.run),
        });
      }
    }));
    const seconds = (performance.now() - started) / 1000;

    const kills = AREA_RESULTS.reduce((sum, r) => sum + r.kills, 0);
    const checks = AREA_RESULTS.reduce(
      (sum, r) => sum + [...r.invariants.values()].reduce((a, b) => a + b, 0),
      0,
    );
    const skipped = selected.filter((a) => a.ignore).map((a) => `${a.name} (${a.ignore})`);
    console.log(
      `fault suite: ${kills} kills in all (${
        AREA_RESULTS.map((r) => `${r.area} ${r.kills}`).join(", ")
      }), ${checks} invariant checks, seed ${SUITE_SEED}, ${seconds.toFixed(1)} s wall` +
        (skipped.length ? `; not run: ${skipped.join(", ")}` : ""),
    );
    const ran = selected.filter((a) => !a.ignore).length;
    if (!chosen && AREA_RESULTS.length === ran && kills < MINIMUM_KILLS) {
      throw new Error(
        `fault suite: only ${kills} kills (at least ${MINIMUM_KILLS} wanted), seed ${SUITE_SEED}`,
      );
    }
  },
});
