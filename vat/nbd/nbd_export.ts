/**
 * What the NBD server serves: named exports, each a `BlockDevice`, and what it tells
 * clients about them (size, transmission flags, block size constraints).
 *
 * @module
 */

import type { BlockDevice } from "../disk/block_device.ts";
import {
  FLAG_CAN_MULTI_CONN,
  FLAG_HAS_FLAGS,
  FLAG_READ_ONLY,
  FLAG_SEND_FLUSH,
  FLAG_SEND_FUA,
  FLAG_SEND_TRIM,
  FLAG_SEND_WRITE_ZEROES,
} from "./nbd_protocol.ts";

/** A device served under a name, with an optional description for `nbdinfo` and the like. */
export interface NbdExport {
  device: BlockDevice;
  description?: string;
}

/**
 * The exports of a server, by name ("" is the default export). Looked up at every
 * handshake, so an export added to the map later is served to clients that connect
 * after that.
 */
export type NbdExports = ReadonlyMap<string, BlockDevice | NbdExport>;

/** The export called `name`, if there is one. */
export function findExport(exports: NbdExports, name: string): NbdExport | undefined {
  const found = exports.get(name);
  return found === undefined ? undefined : _asExport(found);
}

/** Every export, in the map's order. */
export function* listExports(exports: NbdExports): Iterable<[string, NbdExport]> {
  for (const [name, found] of exports) yield [name, _asExport(found)];
}

function _asExport(found: BlockDevice | NbdExport): NbdExport {
  // Told apart by `read`, which every device has: a layer over a device may well
  // keep it in a property called `device`.
  return typeof (found as Partial<BlockDevice>).read === "function"
    ? { device: found as BlockDevice }
    : found as NbdExport;
}

/**
 * Advertised minimum block size: any alignment works, since every `BlockDevice`
 * accepts byte-granular requests.
 */
export const MIN_BLOCK_BYTES = 1;

/**
 * Advertised maximum block size, the largest read or write served: 32 MiB, the size
 * the spec says clients may always use. Trim and write-zeroes have no limit.
 */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;

/**
 * The transmission flags of a device. Every device supports flush, FUA (a flush
 * after the write), trim and write-zeroes unless read-only. Multiple connections
 * are safe because all of them reach the same device object, whose flush covers
 * every completed write.
 */
export function transmissionFlags(device: BlockDevice): number {
  let flags = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_CAN_MULTI_CONN;
  if (device.readOnly) flags |= FLAG_READ_ONLY;
  else flags |= FLAG_SEND_FUA | FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES;
  return flags;
}
