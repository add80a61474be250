/**
 * The server's side of the NBD fixed newstyle handshake: greeting, client flags,
 * then option haggling until the client picks an export (`OPT_GO` or
 * `OPT_EXPORT_NAME`), aborts, or hangs up.
 *
 * @module
 */

import type { BufferedReader } from "./buffered_reader.ts";
import type { ReplyWriter } from "./reply_writer.ts";
import {
  findExport,
  listExports,
  MAX_REQUEST_BYTES,
  MIN_BLOCK_BYTES,
  type NbdExport,
  type NbdExports,
  transmissionFlags,
} from "./nbd_export.ts";
import {
  EXPORT_NAME_PADDING_BYTES,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  INFO_BLOCK_SIZE,
  INFO_DESCRIPTION,
  INFO_EXPORT,
  INFO_NAME,
  INIT_MAGIC,
  MAX_STRING_BYTES,
  OPT_ABORT,
  OPT_EXPORT_NAME,
  OPT_GO,
  OPT_INFO,
  OPT_LIST,
  OPT_REPLY_MAGIC,
  OPTION_HEADER_BYTES,
  OPTION_REPLY_HEADER_BYTES,
  OPTS_MAGIC,
  REP_ACK,
  REP_ERR_INVALID,
  REP_ERR_TOO_BIG,
  REP_ERR_UNKNOWN,
  REP_ERR_UNSUP,
  REP_INFO,
  REP_SERVER,
} from "./nbd_protocol.ts";
import { ProtocolError } from "../errors.ts";

/** The export a client chose, under the name it asked for. */
export interface ChosenExport extends NbdExport {
  name: string;
}

/**
 * Option data longer than this is skipped and refused with `REP_ERR_TOO_BIG`: no
 * option vat understands needs more (an export name is at most 4096 bytes).
 */
const _MAX_OPTION_BYTES = 64 * 1024;

const _utf8 = new TextDecoder("utf-8", { fatal: true });
const _encoder = new TextEncoder();

/**
 * Runs the handshake. Returns the chosen export once the client enters the
 * transmission phase, or null if it aborted or hung up. Throws `ProtocolError` when
 * the client breaks a rule that leaves no way to answer (bad magic, unknown client
 * flags, `OPT_EXPORT_NAME` for an export that does not exist); the caller then drops
 * the connection.
 */
export async function negotiate(
  reader: BufferedReader,
  writer: ReplyWriter,
  exports: NbdExports,
): Promise<ChosenExport | null> {
  const greeting = new Uint8Array(18);
  const greetingView = new DataView(greeting.buffer);
  greetingView.setBigUint64(0, INIT_MAGIC);
  greetingView.setBigUint64(8, OPTS_MAGIC);
  greetingView.setUint16(16, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
  await _send(writer, greeting);

  const clientFlagBytes = new Uint8Array(4);
  if (!(await reader.readFull(clientFlagBytes))) return null;
  const clientFlags = new DataView(clientFlagBytes.buffer).getUint32(0);
  if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) !== 0) {
    throw new ProtocolError(`client sent unknown handshake flags 0x${clientFlags.toString(16)}`);
  }
  if ((clientFlags & FLAG_C_FIXED_NEWSTYLE) === 0) {
    throw new ProtocolError("client does not speak the fixed newstyle handshake");
  }
  const noZeroes = (clientFlags & FLAG_C_NO_ZEROES) !== 0;

  const header = new Uint8Array(OPTION_HEADER_BYTES);
  const headerView = new DataView(header.buffer);
  while (true) {
    if (!(await reader.readFull(header))) return null;
    if (headerView.getBigUint64(0) !== OPTS_MAGIC) {
      throw new ProtocolError(
        `bad option magic 0x${headerView.getBigUint64(0).toString(16)} from client`,
      );
    }
    const option = headerView.getUint32(8);
    const length = headerView.getUint32(12);

    if (option === OPT_EXPORT_NAME) {
      // This option has no error reply: a name we cannot serve ends the session.
      if (length > MAX_STRING_BYTES) {
        throw new ProtocolError(`export name of ${length} bytes is longer than 4096`);
      }
      const name = _decodeName(await _readData(reader, length));
      const found = name === undefined ? undefined : findExport(exports, name);
      if (name === undefined) {
        throw new ProtocolError("client asked for an export name that is not UTF-8");
      }
      if (found === undefined) {
        throw new ProtocolError(
          `client asked for export ${JSON.stringify(name)}, which does not exist`,
        );
      }
      const reply = new Uint8Array(10 + (noZeroes ? 0 : EXPORT_NAME_PADDING_BYTES));
      const replyView = new DataView(reply.buffer);
      replyView.setBigUint64(0, BigInt(found.device.sizeBytes));
      replyView.setUint16(8, transmissionFlags(found.device));
      await _send(writer, reply);
      return { ...found, name };
    }

    if (length > _MAX_OPTION_BYTES) {
      await reader.skip(length);
      await _reply(writer, option, REP_ERR_TOO_BIG, `option data of ${length} bytes is too long`);
      continue;
    }
    const data = await _readData(reader, length);

    switch (option) {
      case OPT_ABORT:
        // The client may hang up without waiting for this; a failed write is fine.
        await _reply(writer, option, REP_ACK).catch(() => {});
        return null;
      case OPT_LIST:
        if (length !== 0) {
          await _reply(writer, option, REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
          break;
        }
        for (const [name, found] of listExports(exports)) {
          const nameBytes = _encoder.encode(name);
          const details = _encoder.encode(found.description ?? "");
          const payload = new Uint8Array(4 + nameBytes.length + details.length);
          new DataView(payload.buffer).setUint32(0, nameBytes.length);
          payload.set(nameBytes, 4);
          payload.set(details, 4 + nameBytes.length);
          await _reply(writer, option, REP_SERVER, payload);
        }
        await _reply(writer, option, REP_ACK);
        break;
      case OPT_INFO:
      case OPT_GO: {
        const chosen = await _answerInfo(writer, option, data, exports);
        if (chosen && option === OPT_GO) return chosen;
        break;
      }
      default:
        // Includes NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY, the metadata context
        // options and NBD_OPT_EXTENDED_HEADERS: vat sends simple replies only.
        await _reply(writer, option, REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }
}

/**
 * Answers `OPT_INFO` or `OPT_GO`, whose data is: name length (u32), name, number of
 * information requests (u16), the requests (u16 each). Returns the export if the
 * answer was a success.
 */
async function _answerInfo(
  writer: ReplyWriter,
  option: number,
  data: Uint8Array,
  exports: NbdExports,
): Promise<ChosenExport | null> {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const nameLength = data.length >= 6 ? view.getUint32(0) : -1;
  const requestCount = nameLength >= 0 && nameLength <= data.length - 6
    ? view.getUint16(4 + nameLength)
    : -1;
  if (requestCount < 0 || data.length !== 6 + nameLength + 2 * requestCount) {
    await _reply(writer, option, REP_ERR_INVALID, "malformed export name or information list");
    return null;
  }
  const name = nameLength <= MAX_STRING_BYTES
    ? _decodeName(data.subarray(4, 4 + nameLength))
    : undefined;
  if (name === undefined) {
    await _reply(
      writer,
      option,
      REP_ERR_INVALID,
      "export name is not valid UTF-8 of at most 4096 bytes",
    );
    return null;
  }
  const found = findExport(exports, name);
  if (found === undefined) {
    await _reply(writer, option, REP_ERR_UNKNOWN, `export ${JSON.stringify(name)} does not exist`);
    return null;
  }
  const requested = new Set<number>();
  for (let i = 0; i < requestCount; i++) requested.add(view.getUint16(6 + nameLength + 2 * i));

  const { device } = found;
  const exportInfo = new Uint8Array(12);
  const exportView = new DataView(exportInfo.buffer);
  exportView.setUint16(0, INFO_EXPORT);
  exportView.setBigUint64(2, BigInt(device.sizeBytes));
  exportView.setUint16(10, transmissionFlags(device));
  await _reply(writer, option, REP_INFO, exportInfo);

  // Block sizes are sent even when not asked for: the spec allows it, and they only
  // relax the defaults (minimum 1).
  const blockInfo = new Uint8Array(14);
  const blockView = new DataView(blockInfo.buffer);
  blockView.setUint16(0, INFO_BLOCK_SIZE);
  blockView.setUint32(2, MIN_BLOCK_BYTES);
  blockView.setUint32(6, device.preferredBlockBytes);
  blockView.setUint32(10, MAX_REQUEST_BYTES);
  await _reply(writer, option, REP_INFO, blockInfo);

  if (requested.has(INFO_NAME)) {
    await _reply(writer, option, REP_INFO, _stringInfo(INFO_NAME, name));
  }
  if (requested.has(INFO_DESCRIPTION) && found.description !== undefined) {
    await _reply(writer, option, REP_INFO, _stringInfo(INFO_DESCRIPTION, found.description));
  }
  await _reply(writer, option, REP_ACK);
  return { ...found, name };
}

function _stringInfo(type: number, text: string): Uint8Array {
  const bytes = _encoder.encode(text).subarray(0, MAX_STRING_BYTES);
  const info = new Uint8Array(2 + bytes.length);
  new DataView(info.buffer).setUint16(0, type);
  info.set(bytes, 2);
  return info;
}

/** The name as a string, or undefined if it is not UTF-8 or contains NUL. */
function _decodeName(bytes: Uint8Array): string | undefined {
  try {
    const name = _utf8.decode(bytes);
    return name.includes("\0") ? undefined : name;
  } catch {
    return undefined;
  }
}

async function _readData(reader: BufferedReader, length: number): Promise<Uint8Array> {
  const data = new Uint8Array(length);
  if (length > 0 && !(await reader.readFull(data))) {
    throw new ProtocolError(`connection closed before ${length} bytes of option data`);
  }
  return data;
}

/** Sends an option reply; `payload` is bytes, or a message for an error reply. */
function _reply(
  writer: ReplyWriter,
  option: number,
  type: number,
  payload: Uint8Array | string = new Uint8Array(0),
): Promise<void> {
  const data = typeof payload === "string" ? _encoder.encode(payload) : payload;
  const message = new Uint8Array(OPTION_REPLY_HEADER_BYTES + data.length);
  const view = new DataView(message.buffer);
  view.setBigUint64(0, OPT_REPLY_MAGIC);
  view.setUint32(8, option);
  view.setUint32(12, type);
  view.setUint32(16, data.length);
  message.set(data, OPTION_REPLY_HEADER_BYTES);
  return _send(writer, message);
}

/** Writes a handshake message and waits for it; a failed write ends the handshake. */
async function _send(writer: ReplyWriter, message: Uint8Array): Promise<void> {
  await writer.send(message);
  if (writer.failure !== undefined) {
    throw new ProtocolError("client hung up during the handshake", { cause: writer.failure });
  }
}
