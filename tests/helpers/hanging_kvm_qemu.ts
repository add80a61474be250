/**
 * A stand-in `qemu-system-x86_64` that behaves like QEMU on a host whose KVM hangs
 * Linux guests (a `kvm_pvm` host): given `-accel kvm`, it runs the BIOS but no Linux
 * kernel and no disk (it drops `-kernel`, `-initrd`, `-append` and the `-blockdev`s with
 * their `-device`s, and runs the real QEMU under TCG), so SeaBIOS finds nothing to boot
 * and waits forever: QMP answers `running`, the serial console stays empty, and no disk
 * request arrives, exactly as on such a host. Without `-accel kvm` it is the real QEMU.
 *
 * @module
 */

/** Writes the stand-in into `dir` (put `dir` first on PATH); returns its path. */
export async function writeHangingKvmQemu(dir: string): Promise<string> {
  const real = await _realQemu();
  const path = `${dir}/qemu-system-x86_64`;
  await Deno.writeTextFile(
    path,
    `#!/bin/bash
# A QEMU whose KVM hangs Linux guests (see tests/helpers/hanging_kvm_qemu.ts).
kvm=0
for ((i = 1; i <= $#; i++)); do
  if [[ "\${!i}" == -accel ]]; then
    j=$((i + 1))
    [[ "\${!j}" == kvm ]] && kvm=1
  fi
done
[[ $kvm == 0 ]] && exec ${real} "$@"
args=()
while (($#)); do
  case "$1" in
    -kernel | -initrd | -append | -blockdev) shift 2 ;;
    -device)
      if [[ "$2" == *virtio-blk* ]]; then shift 2; else args+=("$1" "$2"); shift 2; fi ;;
    -accel) args+=(-accel tcg); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
exec ${real} "\${args[@]}"
`,
    { mode: 0o755 },
  );
  return path;
}

async function _realQemu(): Promise<string> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    const path = `${dir}/qemu-system-x86_64`;
    try {
      if ((await Deno.stat(path)).isFile) return await Deno.realPath(path);
    } catch {
      // Not here.
    }
  }
  throw new Error("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)");
}
