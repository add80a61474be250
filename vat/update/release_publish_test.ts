import assert from "node:assert/strict";
import { alignBundleModules } from "./release_publish.ts";

Deno.test("alignBundleModules() starts every module on a chunk boundary and adds only whitespace", () => {
  const bundle = [
    "// vat/errors.ts\nclass VatError extends Error {}\n",
    "// vat/repo/publish.ts\nvar MAX = 20;\nconst s = `a\n// not/a/module\n`;\n",
    "// main.ts\nconsole.log(MAX, s);\n",
  ].join("\n");
  const out = new TextDecoder().decode(alignBundleModules(bundle, 64));
  assert.equal(out.length % 64, 0);
  for (const name of ["// vat/repo/publish.ts\n", "// main.ts\n"]) {
    assert.equal(out.indexOf(name) % 64, 0, `${name.trim()} starts a chunk`);
  }
  const words = (text: string) => text.replace(/[ \n]+/g, " ");
  assert.equal(words(out).trim(), words(bundle).trim());
  assert.ok(out.includes("const s = `a\n// not/a/module\n`;"), "a string is left alone");
});

Deno.test("alignBundleModules() keeps later modules' chunks when an earlier one grows", () => {
  const a = "// a.ts\nvar x = 1;\n// b.ts\nvar y = 2;\n";
  const b = "// a.ts\nvar x = 1000;\n// b.ts\nvar y = 2;\n";
  const one = alignBundleModules(a, 32);
  const two = alignBundleModules(b, 32);
  assert.deepEqual(one.subarray(32), two.subarray(32));
});
