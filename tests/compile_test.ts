/**
 * `deno task compile` makes the single executable `dist/vat` that carries the UI and the
 * demo's init script. `deno compile` needs `denort`, Deno's runtime without its tools,
 * which it downloads from Deno's servers unless `DENORT_BIN` names a copy: this test
 * runs only where `DENORT_BIN` names one (these machines cannot download it) and says
 * so when it skips.
 */

import assert from "node:assert/strict";
import { run } from "./helpers/processes.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DENORT = Deno.env.get("DENORT_BIN");
const denortThere = DENORT ? await Deno.stat(DENORT).then(() => true, () => false) : false;
if (!denortThere) {
  console.log(
    `compile_test: skipped: no denort (set DENORT_BIN to a denort ${Deno.version.deno} binary; ` +
      (DENORT ? `${DENORT} does not exist)` : "it is unset)"),
  );
}

Deno.test({
  name: "deno task compile makes one binary that serves the UI from itself, run from anywhere",
  ignore: !denortThere,
  async fn() {
    const built = await run(Deno.execPath(), ["task", "compile"]);
    assert.equal(built.code, 0, built.stderr);
    const binary = `${ROOT}dist/vat`;
    const elsewhere = await Deno.makeTempDir({ prefix: "vat-compile-test-" });
    const copy = `${elsewhere}/vat`;
    await Deno.copyFile(binary, copy);
    await Deno.chmod(copy, 0o755);
    const child = new Deno.Command(copy, {
      args: ["--headless", "--state", `${elsewhere}/state`, "--port", "0", "--accel", "tcg"],
      cwd: elsewhere,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    try {
      const version = await run(copy, ["--version"]);
      assert.match(version.stdout, /^vat \d+\.\d+\.\d+/);
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (!/listening at (\S+)/.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the binary did not start: ${text}`);
        text += value;
      }
      const url = /listening at (\S+)/.exec(text)![1];
      const page = await (await fetch(url)).text();
      const script = /src="\/(ui\/[^"]+\.js)"/.exec(page)![1];
      const js = await fetch(`${url}${script}`);
      assert.equal(js.status, 200, "the UI bundle is embedded");
      assert.ok((await js.text()).length > 10_000);
      reader.releaseLock();
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel().catch(() => {});
      await Deno.remove(elsewhere, { recursive: true });
    }
  },
});
