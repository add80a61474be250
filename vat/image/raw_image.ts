/**
 * Disk images as raw bytes: publish reads any format `qemu-img` reads (raw, qcow2,
 * vmdk, vdi, vhdx, ...). Raw images are read in place; others are converted once to a
 * sparse raw temporary file.
 *
 * @module
 */

import { NotFoundError, UsageError } from "../errors.ts";
import { runTool } from "../run_tool.ts";

/** A raw view of an image, and how to release it. */
export interface RawImage {
  path: string;
  sizeBytes: number;
  /** The format qemu-img detected. */
  format: string;
  /** Removes the temporary raw copy, if one was made. */
  cleanup(): Promise<void>;
}

/** Opens a plain file (a kernel, an initrd) as itself, byte for byte. */
export async function openPlainFile(path: string): Promise<RawImage> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new NotFoundError(`file ${path} does not exist`);
    throw err;
  }
  if (!info.isFile) throw new UsageError(`${path} is not a file`);
  return { path, sizeBytes: info.size, format: "file", cleanup: async () => {} };
}

/** Opens `path` as a raw image, converting it with qemu-img when it is not raw. */
export async function openRawImage(path: string, tempDir?: string): Promise<RawImage> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new NotFoundError(`image ${path} does not exist`);
    }
    throw err;
  }
  if (!info.isFile && !info.isBlockDevice) throw new UsageError(`image ${path} is not a file`);
  const json = await runTool("qemu-img", ["info", "--output=json", path], {
    what: `reading the image ${path}`,
  });
  let format: string;
  let virtualSize: number;
  try {
    const parsed = JSON.parse(json);
    format = parsed.format;
    virtualSize = parsed["virtual-size"];
  } catch (err) {
    throw new UsageError(`qemu-img could not describe ${path}`, { cause: err });
  }
  if (format === "raw") {
    return { path, sizeBytes: virtualSize, format, cleanup: async () => {} };
  }
  const dir = await Deno.makeTempDir({ dir: tempDir, prefix: "vat-image-" });
  const raw = `${dir}/image.raw`;
  try {
    await runTool("qemu-img", ["convert", "-O", "raw", path, raw], {
      what: `converting ${format} image ${path} to raw`,
    });
  } catch (err) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
  return {
    path: raw,
    sizeBytes: virtualSize,
    format,
    cleanup: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
}
