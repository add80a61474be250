import assert from "node:assert/strict";
import { V8_FLAGS } from "./v8_flags.ts";

Deno.test("npm start and deno task start run vat with its V8 flags, as the compiled binary does", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
  ) as { tasks: Record<string, string> };
  assert.match(config.tasks.start, new RegExp(` --v8-flags=${V8_FLAGS} main\\.ts$`));
  const compile = await Deno.readTextFile(new URL("../scripts/compile.ts", import.meta.url));
  assert.match(compile, /`--v8-flags=\$\{V8_FLAGS\}`/);
  const bootstrap = await Deno.readTextFile(new URL("../scripts/bootstrap.mjs", import.meta.url));
  assert.ok(bootstrap.includes(`"--v8-flags=${V8_FLAGS}"`), "npm start passes them too");
});
