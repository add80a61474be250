import assert from "node:assert/strict";
import { InstallDir } from "./install_dir.ts";
import { LAUNCHER_SCRIPT } from "./launcher_script.ts";

Deno.test("InstallDir stages into the free slot and writes the launcher", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-install-dir-test-" });
  try {
    const install = new InstallDir(dir);
    assert.deepEqual(await install.read(), { dir, current: null, next: null, failed: null });
    assert.equal(await install.freeSlot(), "A");
    await install.clearSlot("A");
    const release = {
      release: 1,
      vatVersion: "0.2.0",
      kind: "bundle" as const,
      repoId: "r",
      installedAt: "now",
    };
    await install.sealSlot("A", release);
    await install.stage("A");
    const state = await install.read();
    assert.deepEqual(state.next, { slot: "A", attemptsLeft: 3, release });
    assert.equal(await install.freeSlot(), "B");
    assert.equal(await install.freeSlot("B"), "C", "never the running slot");
    assert.equal(await Deno.readTextFile(`${dir}/vat-launcher.sh`), LAUNCHER_SCRIPT);
    assert.equal((await Deno.stat(`${dir}/vat-launcher.sh`)).mode! & 0o111, 0o111);
    assert.match(await Deno.readTextFile(`${dir}/A/launch`), /"\$here\/deno" run -A --no-config/);
    await Deno.writeTextFile(`${dir}/current`, "B\n");
    await Deno.writeTextFile(`${dir}/failed`, "7\n");
    await assert.rejects(install.freeSlot("C"), /no free slot/);
    assert.equal((await install.read()).failed, 7);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
