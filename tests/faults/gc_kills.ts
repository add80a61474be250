/**
 * Fault area "gc": `vat repo gc --keep 1` SIGKILLed at random points (deleting old
 * manifests, announcing itself, sweeping chunks). After every kill `repo verify --all`
 * passes, the newest version is still there and reads back as its image, and the next
 * publish completes at once: it does not wait for the dead run's announcement to go
 * stale (ten minutes) but sees that its process died on this machine.
 *
 * @module
 */

import { fillRandom } from "../helpers/images.ts";
import { type FaultArea, firstDifference, RunLength } from "../helpers/fault_kill.ts";

const MiB = 1024 * 1024;
/** A publish after a killed gc must take no longer than this. */
const PUBLISH_LIMIT_MS = 20_000;

export async function gcKills(area: FaultArea, kills: number): Promise<void> {
  const dir = area.dir;
  const repo = `${dir}/apps`;
  const image = `${dir}/image.raw`;
  await area.ok(["keygen", "--out", `${dir}/key`]);
  await area.ok(["repo", "init", repo, "--kind", "appliance"]);
  let newest = 0;
  /** Publishes a new image; fails if it takes longer than PUBLISH_LIMIT_MS. */
  const publish = async () => {
    const data = new Uint8Array(4 * MiB);
    fillRandom(data, area.int(1, 1 << 30));
    await Deno.writeFile(image, data);
    const publisher = area.spawn([
      "publish",
      repo,
      "--image",
      image,
      "--key",
      `${dir}/key`,
      "--exact",
      "--json",
    ]);
    const ended = await Promise.race([
      publisher.exited,
      new Promise((r) => setTimeout(r, PUBLISH_LIMIT_MS)),
    ]);
    if (!ended) {
      area.fail(
        `a publish after a killed gc still runs after ${PUBLISH_LIMIT_MS} ms (it waits for the dead gc):\n${publisher.output()}`,
      );
    }
    const status = await publisher.exited;
    if (!status.success) area.fail(`publish failed:\n${publisher.output()}`);
    newest = JSON.parse(publisher.stdout()).version;
    area.checked("publish after a killed gc");
  };
  const gcArgs = ["repo", "gc", repo, "--keep", "1", "--json"];

  await publish();
  await publish();
  const started = performance.now();
  await area.ok(gcArgs);
  const length = new RunLength(performance.now() - started);
  while (area.kills < kills) {
    // At least one version for the run to delete, with its chunks.
    await publish();
    const gc = area.spawn(gcArgs);
    if (!(await area.killAfter(gc, area.between(0, 1.1) * length.typicalMs))) {
      length.observeChild(gc);
    }
    const verify = JSON.parse((await area.run(["repo", "verify", repo, "--all", "--json"])).stdout);
    area.check(verify.ok === true, "repo verify --all", JSON.stringify(verify.problems));
    area.check(
      verify.versions.includes(newest),
      "newest version kept",
      `versions ${verify.versions}, newest ${newest}`,
    );
    await area.ok(["export", repo, `${dir}/out.raw`, "--quiet"]);
    const diff = await firstDifference(image, `${dir}/out.raw`);
    area.check(diff === null, "newest version = its image", `byte ${diff} differs`);
  }
  await publish();
}
