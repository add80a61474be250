/**
 * Test disk images made on the spot: deterministic pseudo-random content (so that it
 * neither compresses nor deduplicates by accident) with holes of zeroes.
 *
 * @module
 */

/** Fills `data` with bytes from a xorshift generator seeded by `seed`. */
export function fillRandom(data: Uint8Array, seed: number): void {
  let x = seed >>> 0 || 1;
  const words = new Uint32Array(data.buffer, data.byteOffset, Math.floor(data.length / 4));
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  for (let i = words.length * 4; i < data.length; i++) data[i] = i & 0xff;
}

/**
 * Writes a raw image of `sizeBytes` whose `dataRanges` ([offset, length]) hold
 * random bytes and the rest zeroes.
 */
export async function writeImage(
  path: string,
  sizeBytes: number,
  dataRanges: [number, number][],
  seed = 1,
): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    await file.truncate(sizeBytes);
    for (const [offset, length] of dataRanges) {
      const data = new Uint8Array(length);
      fillRandom(data, seed + offset);
      await file.seek(offset, Deno.SeekMode.Start);
      let written = 0;
      while (written < length) written += await file.write(data.subarray(written));
    }
  } finally {
    file.close();
  }
}

/** Overwrites `length` bytes at `offset` of an existing image with random bytes. */
export async function scribble(path: string, offset: number, length: number, seed: number) {
  const file = await Deno.open(path, { write: true });
  try {
    const data = new Uint8Array(length);
    fillRandom(data, seed);
    await file.seek(offset, Deno.SeekMode.Start);
    let written = 0;
    while (written < length) written += await file.write(data.subarray(written));
  } finally {
    file.close();
  }
}

/** Whether two files have identical bytes. */
export async function sameBytes(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
  return Buffer.from(x).equals(y);
}

/** A digest of every file under `dir` (path, size and content), to show nothing changed. */
export async function treeDigest(dir: string): Promise<string> {
  const { createHash } = await import("node:crypto");
  const hash = createHash("sha256");
  const walk = async (path: string) => {
    const entries = [];
    for await (const e of Deno.readDir(path)) entries.push(e);
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      const full = `${path}/${e.name}`;
      if (e.isDirectory) await walk(full);
      else if (e.isFile) hash.update(full).update(await Deno.readFile(full));
    }
  };
  await walk(dir);
  return hash.digest("hex");
}
