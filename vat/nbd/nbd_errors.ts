/**
 * Every decision about which NBD error a request gets is made here: requests the
 * server refuses before they reach the device, and errors the device throws.
 *
 * @module
 */

import {
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
import { PermanentError, UsageError } from "../errors.ts";
import { isDiskFull } from "../fs_atomic.ts";

/** What the error decisions need to know about the export a request is for. */
export interface ExportLimits {
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  /** The largest read or write the server accepts (advertised as the maximum block size). */
  readonly maxRequestBytes: number;
}

/** The command flags each command accepts; any other flag gets EINVAL. */
const _ALLOWED_FLAGS: Record<number, number> = {
  [CMD_READ]: CMD_FLAG_FUA,
  [CMD_WRITE]: CMD_FLAG_FUA,
  [CMD_FLUSH]: CMD_FLAG_FUA,
  [CMD_TRIM]: CMD_FLAG_FUA,
  [CMD_WRITE_ZEROES]: CMD_FLAG_FUA | CMD_FLAG_NO_HOLE,
};

/**
 * The error a request gets without reaching the device, or 0 if it may proceed:
 * EINVAL for an unknown command or flag, a read or write longer than the maximum
 * block size, or a read or trim past the end; ENOSPC for a write or write-zeroes past
 * the end; EPERM for anything that writes to a read-only export. `offset` may exceed
 * 2^53 (it comes from a u64); such requests are past the end of any disk.
 */
export function requestErrorCode(
  command: number,
  flags: number,
  offset: number,
  length: number,
  limits: ExportLimits,
): number {
  const allowed = _ALLOWED_FLAGS[command];
  if (allowed === undefined || (flags & ~allowed) !== 0) return EINVAL;
  if (command === CMD_FLUSH) return 0;
  const writes = command !== CMD_READ;
  if ((command === CMD_READ || command === CMD_WRITE) && length > limits.maxRequestBytes) {
    return EINVAL;
  }
  if (writes && limits.readOnly) return EPERM;
  if (offset + length > limits.sizeBytes || !Number.isSafeInteger(offset + length)) {
    return command === CMD_WRITE || command === CMD_WRITE_ZEROES ? ENOSPC : EINVAL;
  }
  return 0;
}

/**
 * The error for a device call that threw: ENOSPC for a full disk, EPERM for another
 * `PermanentError` (such as a write to a device that turned out read-only), EINVAL for
 * a `UsageError` (a request the device found out of range), EIO for anything else.
 *
 * A full disk is what `isDiskFull` says it is: a `PermanentError` that says so, or any
 * error caused (through the `cause` chain) by the OS's ENOSPC, EDQUOT or EFBIG or by
 * SQLite's SQLITE_FULL.
 */
export function deviceErrorCode(err: unknown): number {
  if (isDiskFull(err)) return ENOSPC;
  if (err instanceof PermanentError) return EPERM;
  if (err instanceof UsageError) return EINVAL;
  return EIO;
}
