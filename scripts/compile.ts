/**
 * `deno task compile`: builds the single binary `dist/vat`. `deno compile` needs its
 * `denort` base binary, which it downloads from Deno's servers unless `DENORT_BIN`
 * names a local copy; where neither works, this says so instead of failing obscurely.
 */

import { buildUi } from "../vat/ui/build_ui.ts";
import { V8_FLAGS } from "../vat/v8_flags.ts";

const denort = Deno.env.get("DENORT_BIN");
if (denort) {
  try {
    await Deno.stat(denort);
  } catch {
    console.error(`DENORT_BIN=${denort} does not exist`);
    Deno.exit(1);
  }
}
await Deno.mkdir("dist", { recursive: true });
// The browser UI is bundled into dist/ui/ and embedded, so the binary needs no files beside it.
await buildUi();
const result = await new Deno.Command(Deno.execPath(), {
  // The demo appliance's init script is read at run time: embed it.
  args: [
    "compile",
    "-A",
    // Baked into the binary: it runs with them as `deno task start` does.
    `--v8-flags=${V8_FLAGS}`,
    "--include",
    "vat/demo/busybox_appliance_init",
    "--include",
    "dist/ui",
    "--output",
    "dist/vat",
    "main.ts",
  ],
  stdout: "inherit",
  stderr: "inherit",
  env: denort ? { DENORT_BIN: denort } : undefined,
}).output();
if (!result.success) {
  console.error(
    "deno compile failed. Without network access to Deno's servers, set DENORT_BIN to a local " +
      "denort binary of the same Deno version (" + Deno.version.deno + ").",
  );
  Deno.exit(result.code || 1);
}
console.log("built dist/vat");
