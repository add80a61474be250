import assert from "node:assert/strict";
import { compareVatVersions } from "./vat_version.ts";

Deno.test("compareVatVersions() orders by number, a suffix before its release", () => {
  assert.ok(compareVatVersions("0.1.0", "0.2.0") < 0);
  assert.ok(compareVatVersions("0.10.0", "0.9.9") > 0);
  assert.equal(compareVatVersions("1.2.3", "1.2.3"), 0);
  assert.ok(compareVatVersions("1.2.3-rc1", "1.2.3") < 0);
  assert.ok(compareVatVersions("1.2.3", "1.2.3-rc1") > 0);
});
