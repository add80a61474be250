/**
 * The checksums disk metadata carries: CRC-32 (GPT headers and entries), CRC-32C
 * (ext4 metadata_csum) and CRC-16 (ext4 gdt_csum). Table-driven, reflected forms.
 *
 * @module
 */

function _table(poly: number, bits: 16 | 32): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ poly : c >>> 1;
    table[n] = bits === 16 ? c & 0xffff : c >>> 0;
  }
  return table;
}

const CRC32_TABLE = _table(0xedb88320, 32);
const CRC32C_TABLE = _table(0x82f63b78, 32);
const CRC16_TABLE = _table(0xa001, 16);

/** CRC-32 (IEEE 802.3, as zlib and GPT compute it) of `data`. */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC32_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * CRC-32C continued from `crc` over `data`, with no final inversion: the form the Linux
 * kernel's `ext4_chksum()` uses, so ext4 checksums chain through it directly.
 */
export function crc32cRaw(crc: number, data: Uint8Array): number {
  let c = crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC32C_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

/** CRC-16 (polynomial 0x8005, reflected) continued from `crc`, as Linux's `crc16()`. */
export function crc16(crc: number, data: Uint8Array): number {
  let c = crc & 0xffff;
  for (let i = 0; i < data.length; i++) c = (c >>> 8) ^ CRC16_TABLE[(c ^ data[i]) & 0xff];
  return c & 0xffff;
}
