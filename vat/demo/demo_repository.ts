/**
 * The embedded default: a local appliance repository in the state directory holding
 * the busybox demo appliance (built from Debian packages the first time), added to
 * the VAT as "demo" and ready to start. `vat --demo` (the README's `npm start`) sets
 * it up; later starts find it there.
 *
 * @module
 */

import { generateSigningKey, loadSigningKey } from "../auth/signing_key.ts";
import type { Appliances } from "../appliance/appliances.ts";
import { NotFoundError } from "../errors.ts";
import { FileStore } from "../repo/store_file.ts";
import { publishVersion } from "../repo/publish.ts";
import { DEFAULT_CHUNK_BYTES } from "../repo/repo_config.ts";
import { Repository } from "../repo/repository.ts";
import { buildBusyboxAppliance } from "./busybox_appliance.ts";

/** The demo appliance's name on the VAT. */
export const DEMO_NAME = "demo";

/** Makes sure the demo repository exists, holds a version, and is added as "demo". */
export async function ensureDemoAppliance(
  stateDir: string,
  appliances: Appliances,
  log: (line: string) => void,
): Promise<void> {
  const dir = `${stateDir}/demo`;
  const repoDir = `${dir}/repo`;
  await Deno.mkdir(repoDir, { recursive: true });
  const store = new FileStore(repoDir);
  let repo: Repository;
  try {
    repo = await Repository.open(store);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    repo = await Repository.init(store, { kind: "appliance", chunkSizeBytes: DEFAULT_CHUNK_BYTES });
  }
  if ((await repo.latestVersion()) === null) {
    log("building the demo appliance from Debian packages (the first time only)");
    const built = await buildBusyboxAppliance(`${dir}/build`, { systemMarker: "vat-demo" });
    const keyPath = `${dir}/publisher.key`;
    const key = await loadSigningKey(keyPath).catch(() => generateSigningKey(keyPath));
    const result = await publishVersion(repo, {
      system: built.systemImage,
      user: built.userImage,
      kernel: built.kernel,
      initrd: built.initrd,
      append: built.append,
      memoryMiB: 256,
      ephemeralSizeBytes: 16 * 1024 * 1024,
      note: "the busybox demo appliance",
    }, { key });
    log(`published the demo appliance as version ${result.version} of ${repoDir}`);
  }
  if (!(await appliances.list()).some((a) => a.name === DEMO_NAME)) {
    await appliances.add(repoDir, DEMO_NAME);
    log(
      `added the demo appliance: start it with "vat start ${DEMO_NAME}", watch it with "vat console ${DEMO_NAME}"`,
    );
  }
}
