/**
 * The launcher script on its own (vat/update/launcher_script.ts), with slots whose
 * `launch` are small shell scripts standing in for vat: a trial that answers its health
 * check but dies before it settled uses up its attempts and is rolled back; vat's exit
 * code 75 starts the staged slot, which is marked good; SIGTERM stops the launcher and
 * what it started.
 */

import assert from "node:assert/strict";
import { InstallDir } from "../vat/update/install_dir.ts";

/** A slot whose launch script marks itself healthy, then runs `body`. */
async function _slot(install: InstallDir, slot: "A" | "B" | "C", release: number, body: string) {
  await install.clearSlot(slot);
  await install.sealSlot(slot, {
    release,
    vatVersion: `0.${release}.0`,
    kind: "binary",
    repoId: "test",
    installedAt: new Date().toISOString(),
  });
  // The fake replaces the `launch` the install wrote: it stands in for vat itself.
  await Deno.writeTextFile(
    `${install.slotPath(slot)}/launch`,
    `#!/bin/sh\necho "started $VAT_SLOT"\n` +
      `printf '%s %s\\n' "$VAT_SLOT" "$$" > "$VAT_INSTALL_DIR/healthy"\n${body}\n`,
    { mode: 0o755 },
  );
}

Deno.test("the launcher rolls back a trial that dies after its health check, and starts a staged slot on exit 75", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-launcher-test-" });
  let child: Deno.ChildProcess | null = null;
  try {
    const install = new InstallDir(dir);
    await _slot(
      install,
      "A",
      1,
      `while [ ! -f "$VAT_INSTALL_DIR/restart-a" ]; do sleep 0.1; done\n` +
        `rm -f "$VAT_INSTALL_DIR/restart-a"\nexit 75`,
    );
    await _slot(install, "B", 2, "sleep 0.3\nexit 1");
    await Deno.writeTextFile(`${dir}/current`, "A\n");
    await install.stage("B");

    child = new Deno.Command(`${dir}/vat-launcher.sh`, {
      args: ["--headless"],
      env: { VAT_HEALTH_TIMEOUT: "5", VAT_HEALTH_SETTLE: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let text = "";
    const decoder = new TextDecoder();
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      for await (const piece of stream) text += decoder.decode(piece, { stream: true });
    };
    const collecting = Promise.all([collect(child.stdout), collect(child.stderr)]);
    const waitFor = async (pattern: RegExp) => {
      const deadline = Date.now() + 30_000;
      while (!pattern.test(text)) {
        if (Date.now() > deadline) throw new Error(`no ${pattern} in:\n${text}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };

    await waitFor(/slot B \(release 2\) did not prove itself: rolling back/);
    await waitFor(/started A/);
    assert.equal((text.match(/started B/g) ?? []).length, 3, "three attempts");
    assert.equal((await Deno.readTextFile(`${dir}/current`)).trim(), "A");
    assert.equal((await Deno.readTextFile(`${dir}/failed`)).trim(), "2");
    assert.equal(await Deno.readTextFile(`${dir}/next`).catch(() => null), null);

    await _slot(install, "C", 3, "exec sleep 1000");
    await install.stage("C");
    await Deno.writeTextFile(`${dir}/restart-a`, "");
    await waitFor(/slot C \(vat 0\.3\.0\) answered its health check: it is current now/);
    assert.equal((await Deno.readTextFile(`${dir}/current`)).trim(), "C");
    assert.equal(await Deno.readTextFile(`${dir}/next`).catch(() => null), null);

    const pid = Number((await Deno.readTextFile(`${dir}/healthy`)).split(" ")[1]);
    child.kill("SIGTERM");
    const status = await child.status;
    child = null;
    await collecting;
    assert.equal(status.code, 0);
    assert.throws(() => Deno.kill(pid, "SIGCONT"), "the launcher stops what it started");
  } finally {
    if (child) {
      child.kill("SIGKILL");
      await child.status;
      // What the killed launcher had started.
      const last = await Deno.readTextFile(`${dir}/healthy`).catch(() => "");
      const pid = Number(last.split(" ")[1]);
      if (pid > 0) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the launcher with nothing to start says so in one line of its own and exits 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-launcher-test-" });
  try {
    const install = new InstallDir(dir);
    await _slot(install, "A", 1, "exit 0");
    await install.ensureLauncher();
    const run = async () => {
      const out = await new Deno.Command(`${dir}/vat-launcher.sh`, { stderr: "piped" }).output();
      return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
    };
    const none = await run();
    assert.equal(none.code, 1);
    assert.equal(
      none.stderr,
      `vat-launcher: nothing to start: ${dir} has no current slot and no next slot with attempts left\n`,
    );
    await Deno.writeTextFile(`${dir}/current`, "../../bin\n");
    const bad = await run();
    assert.equal(bad.code, 1);
    assert.equal(
      bad.stderr,
      `vat-launcher: nothing to start: ${dir}/current names no slot ('../../bin')\n`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
