/**
 * The host's own Linux boot files, from Debian's packages: its newest kernel
 * (`linux-image-amd64`) and a static busybox (`busybox-static`). The demo appliance is
 * built from them, and the KVM probe boots them.
 *
 * @module
 */

import { NotFoundError } from "../errors.ts";
import { pathExists } from "../fs_atomic.ts";

/** The newest `/boot/vmlinuz-*` whose modules are installed. */
export async function findHostKernel(): Promise<{ kernel: string; version: string }> {
  const versions: string[] = [];
  const boot = await Array.fromAsync(Deno.readDir("/boot")).catch((err) => {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  });
  for (const entry of boot) {
    const match = /^vmlinuz-(.+)$/.exec(entry.name);
    if (match && await pathExists(`/lib/modules/${match[1]}/modules.dep`)) versions.push(match[1]);
  }
  if (versions.length === 0) {
    throw new NotFoundError(
      "no Debian kernel with modules in /boot (apt-get install linux-image-amd64)",
    );
  }
  versions.sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  const version = versions[versions.length - 1];
  return { kernel: `/boot/vmlinuz-${version}`, version };
}

/** The static busybox binary. */
export async function findBusybox(): Promise<string> {
  for (const path of ["/bin/busybox", "/usr/bin/busybox"]) {
    if (await pathExists(path)) return path;
  }
  throw new NotFoundError("busybox is not installed (apt-get install busybox-static)");
}
