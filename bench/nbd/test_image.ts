/**
 * `ensureTestImage()`: a raw disk image for the NBD benchmark whose content is neither
 * trivially compressible nor incompressible, with no all-zero and no duplicate chunks,
 * so every read goes through the chunk cache and every fetch moves real bytes.
 *
 * Every 4 KiB page is 1.5 KiB of pseudo-random bytes and 2.5 KiB of text drawn from a
 * small vocabulary: zstd shrinks it to under 60%, about what it does to a system disk's used
 * blocks. The content depends only on the size and `_FORMAT`, so a kept image is reused.
 *
 * @module
 */

const _PAGE_BYTES = 4096;
const _RANDOM_BYTES_PER_PAGE = 1536;
/** Changes whenever the content would; a kept image of another format is rewritten. */
const _FORMAT = 2;
const _WRITE_BYTES = 16 * 1024 * 1024;
const _TEXT_POOL_BYTES = 4 * 1024 * 1024;
const _WORDS = (
  "the of and to in is for on that with as by this from at be are or it an was not can " +
  "file disk chunk cache block read write error system user version kernel module device " +
  "return value buffer length offset config package install update boot mount network " +
  "service daemon process thread memory page table index hash key server client request"
).split(" ");

/** Returns `path`, writing it first unless it already holds this size's image. */
export async function ensureTestImage(path: string, sizeBytes: number): Promise<string> {
  if (sizeBytes % _WRITE_BYTES !== 0) {
    throw new Error(`test image size must be a multiple of ${_WRITE_BYTES} bytes`);
  }
  const done = `${path}.done`;
  try {
    if ((await Deno.readTextFile(done)).trim() === `${sizeBytes} ${_FORMAT}`) return path;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const tmp = `${path}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    const next = _xorshift(0x9e3779b9);
    const pool = _textPool(next);
    const block = new Uint8Array(_WRITE_BYTES);
    const words = new Uint32Array(block.buffer);
    for (let written = 0; written < sizeBytes; written += _WRITE_BYTES) {
      for (let page = 0; page < _WRITE_BYTES; page += _PAGE_BYTES) {
        const first = page / 4;
        for (let w = 0; w < _RANDOM_BYTES_PER_PAGE / 4; w++) words[first + w] = next();
        const from = next() % (_TEXT_POOL_BYTES - _PAGE_BYTES);
        block.set(
          pool.subarray(from, from + _PAGE_BYTES - _RANDOM_BYTES_PER_PAGE),
          page + _RANDOM_BYTES_PER_PAGE,
        );
      }
      let done = 0;
      while (done < block.length) done += await file.write(block.subarray(done));
    }
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
  await Deno.writeTextFile(done, `${sizeBytes} ${_FORMAT}\n`);
  return path;
}

function _textPool(next: () => number): Uint8Array {
  const pool = new Uint8Array(_TEXT_POOL_BYTES);
  const encoded = _WORDS.map((w) => new TextEncoder().encode(w + " "));
  let at = 0;
  while (at < pool.length) {
    const word = encoded[next() % encoded.length];
    pool.set(word.subarray(0, Math.min(word.length, pool.length - at)), at);
    at += word.length;
  }
  return pool;
}

/** A 32-bit xorshift generator: fast, deterministic, good enough to defeat zstd. */
function _xorshift(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}
