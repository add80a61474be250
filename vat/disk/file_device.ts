/**
 * `FileDevice`: a `BlockDevice` over a raw local file, sparse where the file system
 * allows. vat uses it for ephemeral (scratch) disks and in benchmarks.
 *
 * @module
 */

import { type BlockDevice, checkRange } from "./block_device.ts";
import { ConflictError, NotFoundError, PermanentError, UsageError } from "../errors.ts";

/** How to open a `FileDevice`. */
export interface FileDeviceOptions {
  /** Refuse write, trim and writeZeroes, and open the file read-only. Default false. */
  readOnly?: boolean;
  /** The block size to advertise; a power of two from 512 to 32 MiB. Default 4096. */
  preferredBlockBytes?: number;
}

/** Zeroing works in pieces of this size, so a large trim needs no large buffer. */
const _ZERO_PIECE_BYTES = 1 << 20;
let _zeroPiece: Uint8Array | undefined;
/** A long zeroing lets other requests run after this much time. */
const _YIELD_AFTER_MS = 5;

/**
 * A disk whose bytes are those of a local file. Operations may be issued
 * concurrently.
 *
 * Reads and writes use Deno's synchronous file calls: Deno has no pread/pwrite, and a
 * seek and the transfer after it must not interleave with another request's, which
 * a synchronous pair guarantees for free. It is also several times faster than the
 * asynchronous calls for data in the page cache, which is what an ephemeral disk
 * mostly reads. The price is that the event loop waits for the disk: each call moves
 * at most one request (the NBD server's limit is 32 MiB). Flush runs asynchronously.
 *
 * Trim and writeZeroes make the range read as zeroes: a range that reaches the end
 * of the file becomes a hole (the file is shrunk and grown back); elsewhere zeroes
 * are written, except over pieces that already read as zero, so holes stay holes.
 */
export class FileDevice implements BlockDevice {
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  readonly preferredBlockBytes: number;
  /** The file's path, for messages. */
  readonly path: string;
  #file: Deno.FsFile;
  /** Operations that span several event-loop turns, which `close()` waits for. */
  #running = new Set<Promise<unknown>>();
  #closed?: Promise<void>;

  private constructor(
    path: string,
    file: Deno.FsFile,
    sizeBytes: number,
    options: FileDeviceOptions,
  ) {
    this.path = path;
    this.#file = file;
    this.sizeBytes = sizeBytes;
    this.readOnly = options.readOnly ?? false;
    this.preferredBlockBytes = options.preferredBlockBytes ?? 4096;
  }

  /**
   * Opens an existing file; the disk's size is the file's size. Throws `NotFoundError`
   * if the file does not exist, `UsageError` if it is not a regular file.
   */
  static async open(path: string, options: FileDeviceOptions = {}): Promise<FileDevice> {
    _checkBlockBytes(options.preferredBlockBytes);
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true, write: !options.readOnly });
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new NotFoundError(`disk file ${path} does not exist`, { cause: err });
      }
      if (err instanceof Deno.errors.IsADirectory) throw _notAFile(path, err);
      throw err;
    }
    try {
      const info = await file.stat();
      if (!info.isFile) throw _notAFile(path);
      return new FileDevice(path, file, info.size, options);
    } catch (err) {
      file.close();
      throw err;
    }
  }

  /**
   * Creates a new sparse file of `sizeBytes` (reading as zeroes) and opens it
   * read-write. Throws `ConflictError` if the path already exists.
   */
  static async create(
    path: string,
    sizeBytes: number,
    options: Omit<FileDeviceOptions, "readOnly"> = {},
  ): Promise<FileDevice> {
    _checkBlockBytes(options.preferredBlockBytes);
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
      throw new UsageError(`disk size ${sizeBytes} is not a whole number of bytes`);
    }
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true, write: true, createNew: true });
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) {
        throw new ConflictError(`cannot create disk file ${path}: it already exists`, {
          cause: err,
        });
      }
      throw err;
    }
    try {
      await file.truncate(sizeBytes);
    } catch (err) {
      file.close();
      await Deno.remove(path).catch(() => {});
      throw _wrapIoError(err, `creating the ${sizeBytes}-byte disk file ${path}`);
    }
    return new FileDevice(path, file, sizeBytes, options);
  }

  read(offset: number, into: Uint8Array): Promise<void> {
    return _settled(() => {
      this.#checkOpen();
      checkRange(this.sizeBytes, offset, into.length);
      const done = this.#readAt(offset, into);
      if (done < into.length) {
        throw new Error(
          `reading ${into.length} bytes at ${offset} of ${this.path} failed: the file ` +
            `ends at ${offset + done}, before the disk's ${this.sizeBytes} bytes; was it ` +
            `truncated by another program?`,
        );
      }
    });
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return _settled(() => {
      this.#checkWritable("write");
      checkRange(this.sizeBytes, offset, data.length);
      this.#writeAt(offset, data);
    });
  }

  flush(): Promise<void> {
    return this.#track(async () => {
      this.#checkOpen();
      try {
        await this.#file.syncData();
      } catch (err) {
        throw _wrapIoError(err, `flushing ${this.path}`);
      }
    });
  }

  trim(offset: number, length: number): Promise<void> {
    return this.#track(async () => {
      this.#checkWritable("trim");
      checkRange(this.sizeBytes, offset, length);
      await this.#zero(offset, length);
    });
  }

  writeZeroes(offset: number, length: number): Promise<void> {
    return this.#track(async () => {
      this.#checkWritable("write zeroes to");
      checkRange(this.sizeBytes, offset, length);
      await this.#zero(offset, length);
    });
  }

  /**
   * Waits for running operations, flushes (unless read-only) and closes the file;
   * later operations reject with `UsageError`. Calling it again does nothing more.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      while (this.#running.size > 0) await Promise.allSettled(this.#running);
      try {
        if (!this.readOnly) await this.#file.syncData();
      } finally {
        this.#file.close();
      }
    })();
    return this.#closed;
  }

  /** Runs a multi-turn operation so that `close()` can wait for it. */
  #track<T>(op: () => Promise<T>): Promise<T> {
    const running = op();
    this.#running.add(running);
    const forget = () => this.#running.delete(running);
    running.then(forget, forget);
    return running;
  }

  #checkOpen(): void {
    if (this.#closed) throw new UsageError(`disk file ${this.path} is closed`);
  }

  #checkWritable(verb: string): void {
    this.#checkOpen();
    if (this.readOnly) {
      throw new PermanentError(`cannot ${verb} ${this.path}: the disk is read-only`);
    }
  }

  /** Reads until `into` is full or the file ends; returns the bytes read. */
  #readAt(offset: number, into: Uint8Array): number {
    try {
      this.#file.seekSync(offset, Deno.SeekMode.Start);
      let done = 0;
      while (done < into.length) {
        const n = this.#file.readSync(into.subarray(done));
        if (n === null) break;
        done += n;
      }
      return done;
    } catch (err) {
      throw _wrapIoError(err, `reading ${into.length} bytes at ${offset} of ${this.path}`);
    }
  }

  #writeAt(offset: number, data: Uint8Array): void {
    try {
      this.#file.seekSync(offset, Deno.SeekMode.Start);
      let done = 0;
      while (done < data.length) done += this.#file.writeSync(data.subarray(done));
    } catch (err) {
      throw _wrapIoError(err, `writing ${data.length} bytes at ${offset} of ${this.path}`);
    }
  }

  async #zero(offset: number, length: number): Promise<void> {
    const end = offset + length;
    if (length === 0) return;
    if (end === this.sizeBytes) {
      // Shrinking the file and growing it back leaves a hole that reads as zeroes.
      // Both calls are synchronous, so no other request sees the shorter file (a crash
      // in between would leave it short, and `open()` would then find a smaller disk).
      try {
        this.#file.truncateSync(offset);
        this.#file.truncateSync(this.sizeBytes);
      } catch (err) {
        throw _wrapIoError(err, `zeroing ${length} bytes at ${offset} of ${this.path}`);
      }
      return;
    }
    _zeroPiece ??= new Uint8Array(_ZERO_PIECE_BYTES);
    const piece = new Uint8Array(Math.min(_ZERO_PIECE_BYTES, length));
    let lastYield = performance.now();
    for (let at = offset; at < end; at += piece.length) {
      // Other requests may run between pieces. Each piece is read, checked and written
      // in one turn, so a write that lands in between ends up either under the
      // zeroes or over them, as if it had come before or after this request.
      if (performance.now() - lastYield > _YIELD_AFTER_MS) {
        await new Promise((resolve) => setTimeout(resolve, 0));
        this.#checkOpen();
        lastYield = performance.now();
      }
      const bytes = piece.subarray(0, Math.min(piece.length, end - at));
      const done = this.#readAt(at, bytes);
      if (done === bytes.length && _isZero(bytes)) continue;
      this.#writeAt(at, _zeroPiece.subarray(0, bytes.length));
    }
  }
}

function _notAFile(path: string, cause?: unknown): UsageError {
  return new UsageError(`${path} is not a regular file; give a raw disk image`, { cause });
}

/** Runs a synchronous operation; its failure, a bad range included, rejects. */
function _settled(op: () => void): Promise<void> {
  try {
    op();
    return Promise.resolve();
  } catch (err) {
    return Promise.reject(err);
  }
}

function _checkBlockBytes(bytes: number | undefined): void {
  if (
    bytes !== undefined &&
    (!Number.isInteger(bytes) || bytes < 512 || bytes > 1 << 25 || (bytes & (bytes - 1)) !== 0)
  ) {
    throw new UsageError(
      `preferred block size ${bytes} is not a power of two between 512 and 32 MiB`,
    );
  }
}

/** Whether every byte is zero; compares four bytes at a time where it can. */
function _isZero(bytes: Uint8Array): boolean {
  let i = 0;
  if (bytes.byteOffset % 4 === 0) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2);
    for (const word of words) if (word !== 0) return false;
    i = words.length * 4;
  }
  for (; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * Gives an I/O failure the context of what was being done. Running out of space
 * (ENOSPC, EDQUOT, EFBIG) becomes a `PermanentError` that says "disk full"; the NBD
 * server answers it with ENOSPC.
 */
function _wrapIoError(err: unknown, doing: string): Error {
  if (!(err instanceof Error) || err instanceof UsageError || err instanceof PermanentError) {
    return err as Error;
  }
  const code = (err as { code?: unknown }).code;
  if (code === "ENOSPC" || code === "EDQUOT" || code === "EFBIG") {
    return new PermanentError(`disk full: ${doing} failed (${code}); free some space`, {
      cause: err,
    });
  }
  return new Error(`${doing} failed: ${err.message}`, { cause: err });
}
