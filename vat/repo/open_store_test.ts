import assert from "node:assert/strict";
import { redactLocation } from "./open_store.ts";

Deno.test("redactLocation() hides a URL's password, lone user name and query values", () => {
  assert.equal(
    redactLocation("https://alice:s3cr3t@repo.example/apps/office/"),
    "https://alice:***@repo.example/apps/office/",
  );
  assert.equal(
    redactLocation("https://ghp_token@repo.example/apps/"),
    "https://***@repo.example/apps/",
  );
  assert.equal(
    redactLocation("http://cdn.example/apps/?token=abc&x=1"),
    "http://cdn.example/apps/?token=***&x=***",
  );
  assert.equal(redactLocation("s3://bucket/apps"), "s3://bucket/apps");
  assert.equal(redactLocation("/srv/apps"), "/srv/apps");
});
