import assert from "node:assert/strict";
import { deviceErrorCode, type ExportLimits, requestErrorCode } from "./nbd_errors.ts";
import {
  CMD_BLOCK_STATUS,
  CMD_CACHE,
  CMD_FLAG_DF,
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  EINVAL,
  EIO,
  ENOSPC,
  EPERM,
} from "./nbd_protocol.ts";
import { IntegrityError, PermanentError, TransientError, UsageError } from "../errors.ts";

const disk: ExportLimits = { sizeBytes: 1 << 20, readOnly: false, maxRequestBytes: 65536 };
const readOnly: ExportLimits = { ...disk, readOnly: true };

Deno.test("requestErrorCode() accepts requests within the disk", () => {
  assert.equal(requestErrorCode(CMD_READ, 0, 0, 65536, disk), 0);
  assert.equal(requestErrorCode(CMD_WRITE, CMD_FLAG_FUA, (1 << 20) - 1, 1, disk), 0);
  assert.equal(requestErrorCode(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, 0, 1 << 20, disk), 0);
  assert.equal(requestErrorCode(CMD_TRIM, 0, 0, 1 << 20, disk), 0);
  assert.equal(requestErrorCode(CMD_FLUSH, 0, 0, 0, disk), 0);
  assert.equal(requestErrorCode(CMD_READ, 0, 1 << 20, 0, disk), 0);
  assert.equal(requestErrorCode(CMD_READ, 0, 0, 4096, readOnly), 0);
  assert.equal(requestErrorCode(CMD_FLUSH, 0, 0, 0, readOnly), 0);
});

Deno.test("requestErrorCode() answers unknown commands and flags with EINVAL", () => {
  assert.equal(requestErrorCode(CMD_CACHE, 0, 0, 512, disk), EINVAL);
  assert.equal(requestErrorCode(CMD_BLOCK_STATUS, 0, 0, 512, disk), EINVAL);
  assert.equal(requestErrorCode(99, 0, 0, 512, disk), EINVAL);
  assert.equal(requestErrorCode(CMD_READ, CMD_FLAG_DF, 0, 512, disk), EINVAL);
  assert.equal(requestErrorCode(CMD_WRITE, CMD_FLAG_NO_HOLE, 0, 512, disk), EINVAL);
  assert.equal(requestErrorCode(CMD_TRIM, 1 << 15, 0, 512, disk), EINVAL);
});

Deno.test("requestErrorCode() answers requests past the end: EINVAL, ENOSPC for writes", () => {
  assert.equal(requestErrorCode(CMD_READ, 0, 1 << 20, 1, disk), EINVAL);
  assert.equal(requestErrorCode(CMD_TRIM, 0, 4096, 1 << 20, disk), EINVAL);
  assert.equal(requestErrorCode(CMD_WRITE, 0, (1 << 20) - 1, 2, disk), ENOSPC);
  assert.equal(requestErrorCode(CMD_WRITE_ZEROES, 0, 2 ** 63, 1, disk), ENOSPC);
  assert.equal(requestErrorCode(CMD_READ, 0, 2 ** 64 - 1, 1, disk), EINVAL);
});

Deno.test("requestErrorCode() refuses reads and writes over the maximum block size", () => {
  assert.equal(requestErrorCode(CMD_READ, 0, 0, 65537, disk), EINVAL);
  assert.equal(requestErrorCode(CMD_WRITE, 0, 0, 65537, disk), EINVAL);
  assert.equal(requestErrorCode(CMD_TRIM, 0, 0, 65537, disk), 0);
});

Deno.test("requestErrorCode() answers writes to a read-only export with EPERM", () => {
  assert.equal(requestErrorCode(CMD_WRITE, 0, 0, 512, readOnly), EPERM);
  assert.equal(requestErrorCode(CMD_TRIM, 0, 0, 512, readOnly), EPERM);
  assert.equal(requestErrorCode(CMD_WRITE_ZEROES, 0, 0, 512, readOnly), EPERM);
});

Deno.test("deviceErrorCode() maps vat's errors and full disks", () => {
  assert.equal(deviceErrorCode(new PermanentError("disk full: writing x failed")), ENOSPC);
  const os = Object.assign(new Error("No space left on device (os error 28)"), {
    code: "ENOSPC",
  });
  assert.equal(deviceErrorCode(new Error("writing failed", { cause: os })), ENOSPC);
  assert.equal(deviceErrorCode(new PermanentError("the disk is read-only")), EPERM);
  assert.equal(deviceErrorCode(new UsageError("outside the disk")), EINVAL);
  assert.equal(deviceErrorCode(new IntegrityError("chunk hash mismatch")), EIO);
  assert.equal(deviceErrorCode(new TransientError("timed out")), EIO);
  assert.equal(deviceErrorCode(new Deno.errors.PermissionDenied("no")), EIO);
  assert.equal(deviceErrorCode("a string"), EIO);
});
