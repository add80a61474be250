/**
 * Fault area "export": `vat export` SIGKILLed while it writes a version over an
 * existing image of another version. After every kill the image is one of the two
 * versions, whole, byte for byte: an export writes beside its target and renames it
 * into place at the end (vat/repo/export.ts), so a kill never leaves a mix. An export
 * left alone then replaces it.
 *
 * @module
 */

import { fillRandom } from "../helpers/images.ts";
import { type FaultArea, firstDifference, RunLength } from "../helpers/fault_kill.ts";

const MiB = 1024 * 1024;

export async function exportKills(area: FaultArea, kills: number): Promise<void> {
  const dir = area.dir;
  const repo = `${dir}/apps`;
  await area.ok(["keygen", "--out", `${dir}/key`]);
  await area.ok(["repo", "init", repo, "--kind", "appliance"]);
  const images = [`${dir}/v1.raw`, `${dir}/v2.raw`];
  for (const [i, image] of images.entries()) {
    const data = new Uint8Array(16 * MiB);
    fillRandom(data, area.int(1, 1 << 30));
    // Version 2 shares its first half with version 1 (a mix would hide there).
    if (i === 1) data.set((await Deno.readFile(images[0])).subarray(0, 8 * MiB));
    data.fill(0, 12 * MiB, 13 * MiB);
    await Deno.writeFile(image, data);
    await area.ok(["publish", repo, "--image", image, "--key", `${dir}/key`, "--exact"]);
  }
  const out = `${dir}/out.raw`;
  const exportTo = (version: number) => ["export", `${repo}@${version}`, out, "--quiet"];
  /** Which version `out` holds, whole; fails if it is neither. */
  const holds = async (why: string): Promise<number> => {
    for (const [i, image] of images.entries()) {
      if ((await firstDifference(image, out)) === null) return i + 1;
    }
    area.fail(`${why}: ${out} is neither version 1 nor version 2 whole`);
  };

  const started = performance.now();
  await area.ok(exportTo(1));
  const length = new RunLength(performance.now() - started);
  let current = await holds("a first export");
  while (area.kills < kills) {
    const exporter = area.spawn(exportTo(3 - current));
    if (!(await area.killAfter(exporter, area.between(0.1, 1.0) * length.typicalMs))) {
      length.observeChild(exporter);
    }
    current = await holds(`after kill ${area.kills}`);
    area.checked("image whole, old or new");
  }
  await area.ok(exportTo(3 - current));
  area.check((await holds("an export left alone")) !== current, "export works after kills", "");
}
