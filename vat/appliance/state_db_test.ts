import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { StateDb } from "./state_db.ts";

Deno.test("StateDb.open() adds the hoard columns to an older database and keeps its rows", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-statedb-" });
  try {
    const old = new DatabaseSync(`${dir}/vat.sqlite`);
    old.exec(`CREATE TABLE appliances (name TEXT PRIMARY KEY, repo TEXT NOT NULL,
      added_at TEXT NOT NULL, user_base_version INTEGER, suspended_version INTEGER,
      last_version INTEGER)`);
    old.prepare("INSERT INTO appliances (name, repo, added_at) VALUES (?, ?, ?)").run(
      "desk",
      "/repo",
      "2024-01-01T00:00:00Z",
    );
    old.close();
    const db = StateDb.open(`${dir}/vat.sqlite`);
    try {
      assert.equal(db.get("desk").hoarded, false);
      assert.equal(db.get("desk").hoardedVersion, null);
      db.update("desk", { hoarded: true, hoardedVersion: 3 });
      assert.equal(db.get("desk").hoarded, true);
      assert.equal(db.get("desk").hoardedVersion, 3);
    } finally {
      db.close();
    }
    const again = StateDb.open(`${dir}/vat.sqlite`);
    assert.equal(again.get("desk").hoarded, true, "kept across opens");
    again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
