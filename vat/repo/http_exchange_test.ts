import assert from "node:assert/strict";
import { MIN_UPLOAD_BYTES_PER_SECOND, uploadAllowanceMs } from "./http_exchange.ts";

Deno.test("uploadAllowanceMs() gives a large object the time the paper's DSL uplink needs", () => {
  assert.equal(uploadAllowanceMs(30_000, 0), 30_000);
  // A 16 GiB user disk's snapshot index (8 MiB) over 384 kbit/s takes 175 s.
  const indexBytes = 8 * 1024 * 1024;
  const uplinkMs = (indexBytes / (384_000 / 8)) * 1000;
  assert.ok(
    uploadAllowanceMs(30_000, indexBytes) > uplinkMs * 2,
    `${uploadAllowanceMs(30_000, indexBytes)} ms for ${uplinkMs} ms of upload`,
  );
  // Still bounded: a stalled upload of one 64 KiB chunk fails within 38 s.
  assert.equal(
    uploadAllowanceMs(30_000, 64 * 1024),
    30_000 + (64 * 1024 / MIN_UPLOAD_BYTES_PER_SECOND) * 1000,
  );
});
