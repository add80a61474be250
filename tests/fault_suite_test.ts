/**
 * The fault-injection suite (issue 12): `vat` processes killed with SIGKILL at random
 * points, over and over, each kill followed by a restart and a check of the invariants
 * that must survive it. One test per area (the code is in tests/faults/); the last
 * test prints the total. Seeded: `VAT_FAULT_SEED=S` replays a run (see
 * tests/helpers/fault_kill.ts); `--filter AREA` runs one area.
 */

import { AREA_RESULTS, runArea, SUITE_SEED } from "./helpers/fault_kill.ts";
import { publishKills } from "./faults/publish_kills.ts";
import { backupKills } from "./faults/backup_kills.ts";
import { hoardKills } from "./faults/hoard_kills.ts";
import { cacheFillKills, overlayKills } from "./faults/nbd_kills.ts";

console.log(`fault suite: seed ${SUITE_SEED} (replay with VAT_FAULT_SEED=${SUITE_SEED})`);

Deno.test("fault suite: publish to a file repository", async () => {
  await runArea("publish-file", (area) => publishKills(area, { transport: "file", kills: 20 }));
});

Deno.test("fault suite: publish over HTTP to vat serve", async () => {
  await runArea("publish-http", (area) => publishKills(area, { transport: "http", kills: 20 }));
});

Deno.test("fault suite: cache fill with eviction under vat nbd", async () => {
  await runArea("cache", (area) => cacheFillKills(area, 20));
});

Deno.test("fault suite: overlay writes and flushes through vat nbd", async () => {
  await runArea("overlay", (area) => overlayKills(area, 20));
});

Deno.test("fault suite: snapshot and backup upload", async () => {
  await runArea("backup", (area) => backupKills(area, { rounds: 2, killsPerRound: 5 }));
});

Deno.test("fault suite: hoarding over a slow link", async () => {
  await runArea("hoard", (area) => hoardKills(area, { rounds: 2, killsPerRound: 5 }));
});

Deno.test("fault suite: total", () => {
  const kills = AREA_RESULTS.reduce((sum, r) => sum + r.kills, 0);
  const seconds = AREA_RESULTS.reduce((sum, r) => sum + r.seconds, 0);
  const checks = AREA_RESULTS.reduce(
    (sum, r) => sum + [...r.invariants.values()].reduce((a, b) => a + b, 0),
    0,
  );
  console.log(
    `fault suite: ${kills} kills in all (${
      AREA_RESULTS.map((r) => `${r.area} ${r.kills}`).join(", ")
    }), ${checks} invariant checks, seed ${SUITE_SEED}, ${seconds.toFixed(1)} s`,
  );
});
