import assert from "node:assert/strict";
import { checkKdfParams, deriveSlotKeys, MAX_LOG_N, MIN_LOG_N, newKdfParams } from "./kdf.ts";

Deno.test("checkKdfParams() refuses a work factor below the floor or above the cap", () => {
  const good = newKdfParams(MIN_LOG_N);
  assert.deepEqual(checkKdfParams(good, "slot"), good);
  assert.throws(() => checkKdfParams({ ...good, logN: MIN_LOG_N - 1 }, "slot"), /below the floor/);
  assert.throws(() => checkKdfParams({ ...good, logN: 10 }, "slot"), /a downgrade/);
  assert.throws(() => checkKdfParams({ ...good, logN: MAX_LOG_N + 1 }, "slot"), /above the cap/);
  assert.throws(() => checkKdfParams({ ...good, logN: 40 }, "slot"), /above the cap/);
  assert.throws(() => checkKdfParams({ ...good, p: 64 }, "slot"), /above the cap/);
  assert.throws(() => checkKdfParams({ ...good, r: 32, logN: MAX_LOG_N }, "slot"), /above the cap/);
  assert.throws(() => checkKdfParams({ ...good, alg: "pbkdf2" }, "slot"), /not scrypt/);
  assert.throws(() => checkKdfParams({ ...good, salt: "x" }, "slot"), /salt/);
  assert.throws(() => checkKdfParams(null, "slot"), /not scrypt/);
});

Deno.test("deriveSlotKeys() is deterministic and splits one output into two keys", async () => {
  const params = newKdfParams(MIN_LOG_N);
  const a = await deriveSlotKeys("pässword", params);
  const b = await deriveSlotKeys("pässword".normalize("NFD"), params);
  const c = await deriveSlotKeys("password", params);
  assert.equal(a.loginKey.publicKeyId, b.loginKey.publicKeyId);
  assert.deepEqual(a.wrapKey, b.wrapKey);
  assert.notEqual(a.loginKey.publicKeyId, c.loginKey.publicKeyId);
  assert.notDeepEqual(a.wrapKey, c.wrapKey);
  await assert.rejects(() => deriveSlotKeys("x", { ...params, logN: 30 }), /above the cap/);
});
