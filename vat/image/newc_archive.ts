/**
 * `NewcArchive`: writes cpio archives in the kernel's initramfs format, for the demo
 * appliance's initramfs and the KVM probe's.
 *
 * @module
 */

/**
 * A cpio archive in the "newc" format the kernel unpacks into its initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst): per entry a
 * 110-byte ASCII header of 13 eight-digit hex fields, the NUL-terminated name, the
 * data, each padded to 4 bytes; `TRAILER!!!` ends it. Parent directories are made
 * as needed; times are 0, so the bytes depend on the inputs only.
 */
export class NewcArchive {
  #pieces: Uint8Array[] = [];
  #inode = 1;
  #dirs = new Set<string>();

  directory(path: string, mode = 0o755): void {
    if (this.#dirs.has(path)) return;
    this.#parents(path);
    this.#dirs.add(path);
    this.#entry(path, 0o040000 | mode, new Uint8Array(0));
  }

  file(path: string, data: Uint8Array, mode: number): void {
    this.#parents(path);
    this.#entry(path, 0o100000 | mode, data);
  }

  symlink(path: string, target: string): void {
    this.#parents(path);
    this.#entry(path, 0o120777, new TextEncoder().encode(target));
  }

  characterDevice(path: string, major: number, minor: number): void {
    this.#parents(path);
    this.#entry(path, 0o020600, new Uint8Array(0), major, minor);
  }

  finish(): Uint8Array {
    this.#entry("TRAILER!!!", 0, new Uint8Array(0));
    const total = this.#pieces.reduce((sum, piece) => sum + piece.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const piece of this.#pieces) {
      out.set(piece, at);
      at += piece.length;
    }
    return out;
  }

  #parents(path: string): void {
    const slash = path.lastIndexOf("/");
    if (slash > 0) this.directory(path.slice(0, slash));
  }

  #entry(name: string, mode: number, data: Uint8Array, rdevMajor = 0, rdevMinor = 0): void {
    const nameBytes = new TextEncoder().encode(`${name}\0`);
    const fields = [
      this.#inode++,
      mode,
      0, // uid
      0, // gid
      (mode & 0o170000) === 0o040000 ? 2 : 1, // nlink
      0, // mtime
      data.length,
      0, // devmajor
      0, // devminor
      rdevMajor,
      rdevMinor,
      nameBytes.length,
      0, // check
    ];
    const header = "070701" + fields.map((f) => f.toString(16).padStart(8, "0")).join("");
    this.#pieces.push(new TextEncoder().encode(header), nameBytes);
    this.#pad(110 + nameBytes.length);
    this.#pieces.push(data);
    this.#pad(data.length);
  }

  #pad(length: number): void {
    const extra = (4 - length % 4) % 4;
    if (extra) this.#pieces.push(new Uint8Array(extra));
  }
}
