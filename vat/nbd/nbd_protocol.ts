/**
 * The constants of the NBD protocol that vat's server uses: the fixed newstyle
 * handshake, its options and replies, and the transmission phase's requests and
 * simple replies. The protocol itself is specified in the NBD project's
 * `doc/proto.md` (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md);
 * names here are the spec's, without the `NBD_` prefix. All integers on the wire are
 * big-endian.
 *
 * @module
 */

// Handshake ---------------------------------------------------------------------------

/** "NBDMAGIC": the first 8 bytes the server sends. */
export const INIT_MAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": the newstyle magic, sent by the server and before every client option. */
export const OPTS_MAGIC = 0x49484156454f5054n;
/** Magic of every option reply (fixed newstyle). */
export const OPT_REPLY_MAGIC = 0x3e889045565a9n;

/** Handshake flags the server sends (16 bits). */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;

/** Client flags (32 bits); any other bit makes the server drop the connection. */
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

/**
 * Handshake options vat knows. Every other option gets `REP_ERR_UNSUP`, and so does
 * `OPT_STRUCTURED_REPLY`: vat sends simple replies only.
 */
export const OPT_EXPORT_NAME = 1;
export const OPT_ABORT = 2;
export const OPT_LIST = 3;
export const OPT_INFO = 6;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;

/** Option reply types that vat sends; errors have bit 31 set. */
export const REP_ACK = 1;
export const REP_SERVER = 2;
export const REP_INFO = 3;
export const REP_ERR_UNSUP = 0x80000001;
export const REP_ERR_INVALID = 0x80000003;
export const REP_ERR_UNKNOWN = 0x80000006;
export const REP_ERR_TOO_BIG = 0x80000009;

/** Information types of `REP_INFO` replies to `OPT_INFO` and `OPT_GO`. */
export const INFO_EXPORT = 0;
export const INFO_NAME = 1;
export const INFO_DESCRIPTION = 2;
export const INFO_BLOCK_SIZE = 3;

/** Transmission flags (16 bits), sent with the export's size. */
export const FLAG_HAS_FLAGS = 1 << 0;
export const FLAG_READ_ONLY = 1 << 1;
export const FLAG_SEND_FLUSH = 1 << 2;
export const FLAG_SEND_FUA = 1 << 3;
export const FLAG_SEND_TRIM = 1 << 5;
export const FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const FLAG_CAN_MULTI_CONN = 1 << 8;

/** Header sizes: an option from the client, and an option reply from the server. */
export const OPTION_HEADER_BYTES = 16;
export const OPTION_REPLY_HEADER_BYTES = 20;
/** Zero padding after the `OPT_EXPORT_NAME` reply unless `FLAG_C_NO_ZEROES` was agreed. */
export const EXPORT_NAME_PADDING_BYTES = 124;
/** The spec's limit on any string (export names, descriptions, messages). */
export const MAX_STRING_BYTES = 4096;

// Transmission ------------------------------------------------------------------------

export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;

/**
 * A request: magic (u32), command flags (u16), type (u16), cookie (u64, echoed in the
 * reply), offset (u64), length (u32); a `CMD_WRITE` is followed by `length` bytes.
 */
export const REQUEST_BYTES = 28;
/** A simple reply: magic (u32), error (u32), cookie (u64); a successful read's data follows. */
export const SIMPLE_REPLY_BYTES = 16;

/** Request types. */
export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_TRIM = 4;
export const CMD_CACHE = 5;
export const CMD_WRITE_ZEROES = 6;
export const CMD_BLOCK_STATUS = 7;

/** Command flags (16 bits). */
export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;
export const CMD_FLAG_DF = 1 << 2;

/** Error values of replies (errno-like, but fixed by the spec). */
export const EPERM = 1;
export const EIO = 5;
export const EINVAL = 22;
export const ENOSPC = 28;
export const ESHUTDOWN = 108;
