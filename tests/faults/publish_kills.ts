/**
 * Fault area "publish": `vat publish` SIGKILLed at random points of its upload, to a
 * file repository and to `vat serve` over HTTP (whose server is killed too, now and
 * then, and restarted on the same port). After every kill: `repo verify --all` passes,
 * versions are numbered 1..N with none lost, and a version the killed publisher
 * managed to commit holds exactly the image it was given. Now and then, and at the
 * end, a publish left alone succeeds and reads back byte for byte.
 *
 * @module
 */

import { fillRandom } from "../helpers/images.ts";
import {
  type FaultArea,
  firstDifference,
  RunLength,
  type VatChild,
} from "../helpers/fault_kill.ts";

const MiB = 1024 * 1024;
/** The part of every image that is the same in every version (deduplicated). */
const SHARED_BYTES = 2 * MiB;

/** How many kills each transport gets. */
export interface PublishKillPlan {
  transport: "file" | "http";
  kills: number;
}

/** Writes the image that iteration seed `seed` publishes: shared part + `seed`'s own data. */
async function writeVersionImage(path: string, seed: number): Promise<void> {
  const ownBytes = (1 + (seed % 4)) * MiB / 2;
  const data = new Uint8Array(SHARED_BYTES + ownBytes);
  fillRandom(data.subarray(0, SHARED_BYTES), 1);
  fillRandom(data.subarray(SHARED_BYTES), seed);
  await Deno.writeFile(path, data);
}

export async function publishKills(area: FaultArea, plan: PublishKillPlan): Promise<void> {
  const dir = area.dir;
  const key = `${dir}/publisher.key`;
  await area.ok(["keygen", "--out", key]);
  let server: VatChild | null = null;
  let repo = `${dir}/apps`;
  // Where the repository's files are: verified there (quicker than through the server,
  // and the same objects); exports go through the transport.
  let onDisk = repo;
  let listen = "127.0.0.1:0";
  const startServer = async () => {
    const serve = (address: string) =>
      area.start(
        ["serve", "--root", `${dir}/served`, "--listen", address, "--allow-key", `${key}.pub`],
        /serving .* at (http:\/\/\S+)/,
      );
    // The same port again, unless another process took it meanwhile: then a new one
    // (and the repository's URL with it).
    server = await serve(listen).catch(() => serve("127.0.0.1:0"));
    const url = /at (http:\/\/\S+)/.exec(server.output())![1];
    listen = new URL(url).host;
    repo = `${url}apps`;
    return url;
  };
  if (plan.transport === "http") {
    await Deno.mkdir(`${dir}/served`);
    await startServer();
    onDisk = `${dir}/served/apps`;
    await area.ok(["repo", "init", repo, "--kind", "appliance", "--key", key]);
  } else {
    await area.ok(["repo", "init", repo, "--kind", "appliance"]);
  }

  const image = `${dir}/image.raw`;
  const publishArgs = (seed: number) => [
    "publish",
    repo, // (read at each call: a restarted server may have a new port)
    "--image",
    image,
    "--key",
    key,
    "--exact",
    "--note",
    `seed ${seed}`,
  ];
  /** Versions seen so far: version -> the image seed of its note. */
  const committed = new Map<number, number>();

  /** Every invariant of the repository after a kill (or a clean publish). */
  const checkRepository = async (afterKillOf: string) => {
    const verify = JSON.parse(
      (await area.run(["repo", "verify", onDisk, "--all", "--json"])).stdout,
    );
    area.check(
      verify.ok === true,
      "repo verify --all",
      `after killing ${afterKillOf}: ${JSON.stringify(verify.problems)}`,
    );
    const numbers: number[] = verify.versions;
    area.check(
      numbers.every((n, i) => n === i + 1),
      "versions 1..N, none lost",
      `after killing ${afterKillOf}: versions ${numbers.join(",")}`,
    );
    area.check(
      [...committed.keys()].every((n) => numbers.includes(n)),
      "versions 1..N, none lost",
      `a committed version disappeared: had ${[...committed.keys()]}, now ${numbers}`,
    );
    if (numbers.every((n) => committed.has(n))) return;
    const ls = JSON.parse((await area.ok(["repo", "ls", repo, "--json"])).stdout);
    for (const v of ls.versions as { version: number; note: string | null }[]) {
      if (committed.has(v.version)) continue;
      const seed = Number(/^seed (\d+)$/.exec(v.note ?? "")?.[1]);
      committed.set(v.version, seed);
      // A version committed under a kill holds exactly its publisher's image.
      await writeVersionImage(`${dir}/expected.raw`, seed);
      await area.ok(["export", `${repo}@${v.version}`, `${dir}/out.raw`, "--quiet"]);
      const diff = await firstDifference(`${dir}/expected.raw`, `${dir}/out.raw`);
      area.check(
        diff === null,
        "committed version = its image",
        `version ${v.version} differs from its image at byte ${diff}`,
      );
    }
  };

  /** A publish nobody kills: it must work and read back. */
  const cleanPublish = async (seed: number) => {
    await writeVersionImage(image, seed);
    const started = performance.now();
    const out = JSON.parse((await area.ok([...publishArgs(seed), "--json"])).stdout);
    const ms = performance.now() - started;
    await checkRepository("nothing (a clean publish)");
    area.check(committed.get(out.version) === seed, "new publish works", `version ${out.version}`);
    return ms;
  };

  // The first, clean publish also measures how long one takes, to aim the kills.
  let nextSeed = area.int(1, 1 << 30);
  const length = new RunLength(await cleanPublish(nextSeed++));

  for (let attempt = 0; area.kills < plan.kills; attempt++) {
    if (attempt >= plan.kills * 3) area.fail(`only ${area.kills} kills in ${attempt} attempts`);
    const seed = nextSeed++;
    await writeVersionImage(image, seed);
    const publisher = area.spawn(publishArgs(seed));
    if (server && area.random() < 0.25) {
      // The server dies under the publisher and comes back on the same port.
      await area.killAfter(server, area.between(0.2, 1.0) * length.typicalMs);
      await startServer();
      // It retries a server that went away; given a moment, it may finish; else it is
      // killed mid-retry.
      await area.killAfter(publisher, 1000);
      await checkRepository("vat serve");
    } else {
      if (!(await area.killAfter(publisher, area.between(0.1, 1.0) * length.typicalMs))) {
        length.observeChild(publisher);
      }
      await checkRepository("vat publish");
    }
    if (attempt % 10 === 9) length.observe(await cleanPublish(nextSeed++));
  }
  await cleanPublish(nextSeed++);
  // The last version reads back as the image just published.
  await area.ok(["export", repo, `${dir}/out.raw`, "--quiet"]);
  area.check(
    (await firstDifference(image, `${dir}/out.raw`)) === null,
    "new publish works",
    "the newest version differs from its image",
  );
}
