/**
 * Fault area "backup": a daemon with `--data-repo` and `--user-key` SIGKILLed while it
 * snapshots and uploads a user disk (docs/BACKUP.md), again and again, restarted after
 * each kill. The appliance boots nothing (its system disk is empty, so QEMU sits in
 * its BIOS): the snapshot a start takes of a new subscription's initial user disk is
 * the upload under test, and no guest is needed. After every kill: no QEMU is left
 * (and the daemon restarts even when the pid in the daemon.json it left is taken),
 * and `vat repo verify --user-key` passes on the data repository (signatures, indexes,
 * every chunk present). After each round (a few kills, then a restart left alone) the
 * outbox drains, the subscription's newest version is the user disk byte for byte, and
 * `verify --all` (every chunk read and checked) passes; a last round nobody kills is a
 * new backup that works.
 *
 * @module
 */

import { fillRandom } from "../helpers/images.ts";
import { type FaultArea, firstDifference, qemuPidsMentioning } from "../helpers/fault_kill.ts";

const MiB = 1024 * 1024;

interface BackupStatus {
  name: string;
  pendingBytes: number;
  pendingSnapshots: number;
  uploading: boolean;
  lastVersion: number | null;
  error: string | null;
}

/** How the area runs: rounds of `killsPerRound` kills, each round a new subscription. */
export interface BackupKillPlan {
  rounds: number;
  killsPerRound: number;
}

export async function backupKills(area: FaultArea, plan: BackupKillPlan): Promise<void> {
  const dir = area.dir;
  const apps = `${dir}/apps`;
  const data = `${dir}/data`;
  const userKey = `${dir}/user.key`;
  const state = `${dir}/state`;
  await area.ok(["keygen", "--out", `${dir}/key`]);
  await area.ok(["keygen", "--user", "--out", userKey]);
  await area.ok(["repo", "init", apps, "--kind", "appliance"]);
  const system = `${dir}/system.raw`;
  await Deno.writeFile(system, new Uint8Array(MiB));

  const startDaemon = () =>
    area.start(
      [
        "--headless",
        "--state",
        state,
        "--port",
        "0",
        "--data-repo",
        data,
        "--user-key",
        userKey,
        "--snapshot-interval",
        "3600",
        // 6 MiB at 8 Mbit/s: an upload takes seconds, several kills.
        "--backup-limit",
        "8M",
      ],
      /listening at/,
      // QEMU only runs the BIOS here, but a daemon that knows VAT_ACCEL skips its KVM
      // probe (seconds at every first start) when told TCG.
      { env: { VAT_ACCEL: "tcg" } },
    );
  const statusOf = async (name: string): Promise<BackupStatus> => {
    const all = JSON.parse(
      (await area.ok(["backup", "status", "--state", state, "--json"])).stdout,
    );
    return all.find((b: BackupStatus) => b.name === name);
  };
  const drained = async (name: string) => {
    const deadline = performance.now() + 30_000;
    for (;;) {
      const b = await statusOf(name);
      if (b.pendingBytes === 0 && b.pendingSnapshots === 0 && !b.uploading && b.lastVersion) {
        return b;
      }
      if (performance.now() > deadline) {
        area.fail(`backup of ${name} never drained: ${JSON.stringify(b)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const noOrphanQemu = async (why: string) => {
    const deadline = performance.now() + 3000;
    let pids = await qemuPidsMentioning(state);
    while (pids.length && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      pids = await qemuPidsMentioning(state);
    }
    area.check(pids.length === 0, "no orphan QEMU", `${why}: QEMU ${pids.join(", ")} left running`);
  };
  /** `repo verify` (with `all`: reading every chunk) of the data repository. */
  const verifyData = async (why: string, all: boolean) => {
    const verify = await area.run([
      "repo",
      "verify",
      data,
      ...(all ? ["--all"] : []),
      "--user-key",
      userKey,
      "--json",
    ]);
    const report = JSON.parse(verify.stdout || "{}");
    area.check(
      verify.code === 0 && report.ok === true,
      all ? "data repo verify --all" : "data repo verify",
      `${why}: ${verify.stderr}${verify.stdout}`,
    );
  };
  /** Publishes a version whose initial user disk (`sizeBytes`) is new; adds it as `name`. */
  const newAppliance = async (name: string, sizeBytes: number) => {
    const user = `${dir}/${name}.raw`;
    const bytes = new Uint8Array(sizeBytes);
    fillRandom(bytes, area.int(1, 1 << 30));
    await Deno.writeFile(user, bytes);
    await area.ok([
      "publish",
      apps,
      "--image",
      system,
      "--user-disk",
      user,
      "--key",
      `${dir}/key`,
      "--memory",
      "32",
      "--exact",
    ]);
    await area.ok(["appliance", "add", apps, "--name", name, "--state", state]);
    return user;
  };
  /** After a round: drained, the newest version is the user disk, the repository verifies. */
  const roundDone = async (name: string, user: string) => {
    const b = await drained(name);
    area.check(b.error === null, "outbox drains", `${name}: ${b.error}`);
    const out = `${dir}/restored.raw`;
    await area.ok([
      "export",
      data,
      "--user-key",
      userKey,
      "--subscription",
      name,
      out,
      "--quiet",
    ]);
    const diff = await firstDifference(user, out);
    area.check(diff === null, "backup = user disk", `${name}: byte ${diff} differs`);
    await verifyData(`after ${name}'s round`, true);
  };

  /** Kills the daemon, checks what must hold with it dead, starts it again. */
  const killDaemon = async (point: string, reusePid = area.random() < 0.3) => {
    if (!(await area.kill(daemon))) area.fail(`the daemon exited by itself:\n${daemon.output()}`);
    area.killedAt(point);
    await noOrphanQemu(`after kill ${area.kills}`);
    await verifyData(`after kill ${area.kills}`, false);
    if (reusePid) {
      // As after a reboot: the killed daemon's daemon.json names a pid that another
      // process (this one) has now. The next daemon must start all the same.
      const info = JSON.parse(await Deno.readTextFile(`${state}/daemon.json`));
      await Deno.writeTextFile(`${state}/daemon.json`, JSON.stringify({ ...info, pid: Deno.pid }));
      daemon = await startDaemon();
      area.checked("restart despite a reused pid in daemon.json");
    } else {
      daemon = await startDaemon();
    }
  };

  let daemon = await startDaemon();
  for (let round = 0; round < plan.rounds; round++) {
    const name = `desk${round}`;
    const user = await newAppliance(name, 6 * MiB);
    // The first kill lands somewhere in `vat start`: while QEMU is spawned and the
    // start snapshot of the whole initial user disk is sealed into the outbox.
    const starting = area.spawn(["start", name, "--state", state]);
    await Promise.race([starting.exited, new Promise((r) => setTimeout(r, area.between(0, 2500)))]);
    await killDaemon(starting.hasExited ? "after start" : "during start");
    await starting.exited;
    const first = await statusOf(name);
    if (first.lastVersion === null && first.pendingSnapshots === 0 && first.pendingBytes === 0) {
      // Killed before the start snapshot was frozen: nothing changed, nothing was
      // queued, nothing is lost; the next start takes it (and the kills below hit its
      // upload).
      area.killedAt("(of those in start: before its snapshot)");
      await area.ok(["start", name, "--state", state]);
    }
    for (let k = 1; k < plan.killsPerRound; k++) {
      await new Promise((r) => setTimeout(r, area.between(100, 700)));
      const before = await statusOf(name);
      await killDaemon(
        before.uploading || before.pendingBytes > 0 ? "with changes unsent" : "all sent",
      );
    }
    await roundDone(name, user);
    // The appliance is stopped now (its QEMU died with the daemon).
  }
  // A new backup nobody kills.
  const user = await newAppliance("fresh", 2 * MiB);
  await area.ok(["start", "fresh", "--state", state]);
  await roundDone("fresh", user);
  area.checked("new backup works");
  // Its QEMU sits in the BIOS, which ignores an ACPI shutdown: end it the hard way too.
  await killDaemon("at the end", true);
  await daemon.stop();
}
