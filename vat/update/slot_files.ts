/**
 * A release slot's files, chunk by chunk (docs/UPDATE.md): finding the chunks the
 * installed slots already hold (what an update need not fetch), reading one back only
 * while it still matches its hash, writing a file from its disk index, and reading a
 * written file back against that index.
 *
 * @module
 */

import { IntegrityError } from "../errors.ts";
import { hashChunk, toHex } from "../repo/chunk_codec.ts";
import type { DiskIndex } from "../repo/disk_index.ts";
import { type InstallDir, type Slot, SLOTS } from "./install_dir.ts";

/** Where each slot keeps the disk index objects of its files (not a file of the release). */
export const INDEX_DIR = ".indexes";

/** Where a chunk lies in an installed slot's file. */
export interface LocalChunk {
  path: string;
  offset: number;
  length: number;
}

/**
 * Every chunk of the complete slots other than `exclude` (the installed releases'
 * files, cut at the repository's chunk size), by hex hash: what an update need not fetch.
 */
export async function localChunks(
  installDir: InstallDir,
  exclude: Slot,
  chunkBytes: number,
): Promise<Map<string, LocalChunk>> {
  const found = new Map<string, LocalChunk>();
  for (const slot of SLOTS) {
    if (slot === exclude || !(await installDir.slotRelease(slot))) continue;
    for await (const path of _files(installDir.slotPath(slot))) {
      const file = await Deno.open(path, { read: true });
      try {
        const buffer = new Uint8Array(chunkBytes);
        for (let offset = 0;; offset += chunkBytes) {
          const n = await _readFull(file, buffer);
          if (n === 0) break;
          found.set(toHex(hashChunk(buffer.subarray(0, n))), { path, offset, length: n });
          if (n < chunkBytes) break;
        }
      } finally {
        file.close();
      }
    }
  }
  return found;
}

async function* _files(dir: string): AsyncIterable<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory && entry.name !== INDEX_DIR) yield* _files(path);
    else if (entry.isFile && !entry.name.endsWith(".part")) yield path;
  }
}

/** A local chunk's bytes if they still match `hash` (the file may have changed since). */
export async function readLocalChunk(
  where: LocalChunk | undefined,
  hash: Uint8Array,
): Promise<Uint8Array | null> {
  if (!where) return null;
  const file = await Deno.open(where.path, { read: true }).catch(() => null);
  if (!file) return null;
  try {
    await file.seek(where.offset, Deno.SeekMode.Start);
    const data = new Uint8Array(where.length);
    if (await _readFull(file, data) !== data.length) return null;
    return toHex(hashChunk(data)) === toHex(hash) ? data : null;
  } finally {
    file.close();
  }
}

/** Writes a file of `index`'s size, chunk by chunk; `chunk` returns null for zeroes. */
export async function writeSlotFile(
  path: string,
  index: DiskIndex,
  chunk: (i: number, hash: Uint8Array | null) => Promise<Uint8Array | null>,
): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    await file.truncate(index.sizeBytes);
    const hashes = new Map<number, Uint8Array>();
    for (const [i, hash] of index.dataChunks()) hashes.set(i, hash);
    for (let i = 0; i < index.count; i++) {
      const data = await chunk(i, hashes.get(i) ?? null);
      if (!data) continue;
      await file.seek(i * index.chunkBytes, Deno.SeekMode.Start);
      let written = 0;
      while (written < data.length) written += await file.write(data.subarray(written));
    }
    await file.sync();
  } finally {
    file.close();
  }
}

/** Reads a written file back and checks every chunk against the index. */
export async function verifySlotFile(path: string, index: DiskIndex, name: string): Promise<void> {
  const hashes = new Map<number, string>();
  for (const [i, hash] of index.dataChunks()) hashes.set(i, toHex(hash));
  const file = await Deno.open(path, { read: true });
  try {
    const buffer = new Uint8Array(index.chunkBytes);
    for (let i = 0; i < index.count; i++) {
      const data = buffer.subarray(0, index.chunkLength(i));
      if (await _readFull(file, data) !== data.length) {
        throw new IntegrityError(`${name} in the slot is shorter than its release says`);
      }
      const want = hashes.get(i);
      const ok = want ? toHex(hashChunk(data)) === want : data.every((b) => b === 0);
      if (!ok) {
        throw new IntegrityError(
          `${name} in the slot does not match its release at chunk ${i} (a bad disk?)`,
        );
      }
    }
  } finally {
    file.close();
  }
}

async function _readFull(file: Deno.FsFile, into: Uint8Array): Promise<number> {
  let filled = 0;
  while (filled < into.length) {
    const n = await file.read(into.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return filled;
}
