/**
 * Builds vat's live image: a disk image that boots into vat from Debian's packages.
 *
 *   deno run -A scripts/build_live_image.ts [OUT] [--state-size SIZE] [--release-url URL]
 *       [--release-key KEY] [--kernel-args "ARGS"] [--json]
 *
 * Runs as root (debootstrap, chroot). A GPT disk of three partitions, found by label:
 *
 * - `VAT-EFI` (FAT): GRUB as EFI/BOOT/BOOTX64.EFI (UEFI boot), which finds `VAT-LIVE` by label
 *   and reads its `live/grub.cfg` (the kernel command line).
 * - `VAT-LIVE` (ext4): `live/vmlinuz`, `live/initrd.img` and `live/filesystem.squashfs`, the
 *   read-only root. Debian's live-boot (in the initramfs) mounts the squashfs under a tmpfs
 *   overlay: writes to the root go to RAM and are gone at the next boot.
 * - `VAT-STATE` (ext4): vat's state directory, mounted on /var/lib/vat by a systemd mount unit
 *   that names it by label: the install directory (slots, launcher), the chunk cache, the
 *   overlays, the outbox. Whatever is written there survives a reboot.
 *
 * The root holds systemd units: `vat.service` starts the launcher of the install directory
 * (`vat --headless` on 127.0.0.1:8460 from the current slot), `vat-kiosk.service` runs cage
 * (a Wayland kiosk compositor) with Chromium showing vat's UI full screen on tty1, and
 * `vat-forward.socket` (only with `vat.forward` on the kernel command line, for tests) passes
 * port 8461 of the guest's network to the daemon's loopback port.
 *
 * Slow steps are cached under .cache/live-image/ by a hash of their inputs: the debootstrap
 * of the package list (`rootfs-HASH/`), the customised root and its squashfs (`root-HASH/`,
 * keyed by the files written into it and ROOT_RECIPE), and the release repository (`releases/`, one release per
 * change of vat's sources, signed by `release.key`). Only the state partition, the EFI
 * partition and the image are assembled at each run (seconds); older cache entries are removed. docs/LIVE_IMAGE.md says more.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createHash } from "node:crypto";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const CACHE = `${ROOT}/.cache/live-image`;
const SUITE = "bookworm";
/** The uid and gid of the `vat` user in the image (owner of the state partition). */
const VAT_UID = 990;
const DAEMON_PORT = 8460;
const FORWARD_PORT = 8461;

/** What debootstrap installs (with their dependencies, no recommends). */
export const PACKAGES = [
  "systemd-sysv",
  "udev",
  "dbus",
  "dbus-user-session",
  "libpam-systemd",
  "kmod",
  "procps",
  "iproute2",
  "ca-certificates",
  "linux-image-amd64",
  "live-boot",
  "cage",
  // cage 0.1.4 does not start without it.
  "xwayland",
  "chromium",
  "fonts-dejavu-core",
  "qemu-system-x86",
  "qemu-utils",
];

/** The kernel command line of the image's boot entries (the test adds its own flags). */
export const KERNEL_ARGS = [
  "boot=live",
  "live-media-path=/live",
  "systemd.firstboot=off",
  "quiet",
];

/** The Debian mirror this machine's apt uses (the first `URIs:` or `deb` line). */
export function debianMirror(): string {
  const files: string[] = [];
  for (const dir of ["/etc/apt/sources.list.d"]) {
    try {
      for (const e of Deno.readDirSync(dir)) {
        if (e.name.endsWith(".sources") || e.name.endsWith(".list")) files.push(`${dir}/${e.name}`);
      }
    } catch { /* none */ }
  }
  files.push("/etc/apt/sources.list");
  for (const file of files.sort()) {
    let text = "";
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const m = line.match(/^URIs:\s*(\S+\/debian)\/?\s*$/) ??
        line.match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\/?\s/);
      if (m) return m[1];
    }
  }
  return "http://deb.debian.org/debian";
}

/** The first 16 hex digits of the SHA-256 of `text`. */
function plainSha(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

function sha(...parts: (string | Uint8Array)[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(p), h.update("\0");
  return h.digest("hex").slice(0, 16);
}

async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; quiet?: boolean } = {},
): Promise<string> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr);
    throw new Error(
      `${cmd} ${args.join(" ")} failed (exit ${out.code}):\n${(text + err).slice(-4000)}`,
    );
  }
  return text;
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

function log(line: string) {
  console.error(`live-image: ${line}`);
}

/** Step 1: debootstrap of PACKAGES, kept pristine (copied before it is customised). */
async function debootstrap(mirror: string): Promise<string> {
  const key = plainSha(`${SUITE}\n${mirror}\nminbase\n${PACKAGES.join(",")}\n`);
  const dir = `${CACHE}/rootfs-${key}`;
  if (await exists(dir)) return dir;
  const tmp = `${dir}.tmp`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(`${CACHE}/debs`, { recursive: true });
  log(
    `debootstrap ${SUITE} from ${mirror} into ${dir} (several minutes, about 320 MB of packages)`,
  );
  await run("debootstrap", [
    "--variant=minbase",
    `--cache-dir=${CACHE}/debs`,
    `--include=${PACKAGES.join(",")}`,
    SUITE,
    tmp,
    mirror,
  ]);
  await Deno.rename(tmp, dir);
  await prune("rootfs-", dir);
  return dir;
}

/** Removes the cached `prefix*` directories other than `keep` (older inputs' builds). */
async function prune(prefix: string, keep: string): Promise<void> {
  for await (const e of Deno.readDir(CACHE)) {
    const path = `${CACHE}/${e.name}`;
    if (e.isDirectory && e.name.startsWith(prefix) && !e.name.endsWith(".tmp") && path !== keep) {
      log(`removing ${path} (built from other inputs)`);
      await Deno.remove(path, { recursive: true });
    }
  }
}

/** The files this script writes into the root, path → [mode, text]. */
function rootFiles(): Record<string, [number, string]> {
  const unit = (text: string): [number, string] => [0o644, text.trimStart()];
  return {
    "/etc/hostname": [0o644, "vat\n"],
    "/etc/hosts": [0o644, "127.0.0.1 localhost\n127.0.1.1 vat\n::1 localhost\n"],
    "/etc/systemd/network/80-dhcp.network": unit(`
[Match]
Name=en* eth*

[Network]
DHCP=yes
`),
    "/etc/systemd/system/var-lib-vat.mount": unit(`
# vat's state directory: the partition labelled VAT-STATE (the USB stick's persistence).
# Without it vat does not start: its state would be lost at the next boot.
[Unit]
Description=vat's state (partition VAT-STATE)

[Mount]
What=/dev/disk/by-label/VAT-STATE
Where=/var/lib/vat
Type=ext4
Options=noatime
`),
    "/etc/systemd/system/vat.service": unit(`
# The VAT daemon from the install directory's current slot, through its launcher
# (boot attempts, mark-good, rollback: docs/UPDATE.md).
[Unit]
Description=vat (virtual appliance transceiver)
RequiresMountsFor=/var/lib/vat
Wants=network-online.target
After=network-online.target

[Service]
User=vat
Group=vat
SupplementaryGroups=kvm
Environment=HOME=/var/lib/vat VAT_STATE=/var/lib/vat
# A first start under emulation (no KVM) can take minutes to answer its health check.
Environment=VAT_HEALTH_TIMEOUT=600
ExecStart=/var/lib/vat/install/vat-launcher.sh --headless --state /var/lib/vat --port ${DAEMON_PORT}
Restart=always
RestartSec=2
KillMode=mixed
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
`),
    "/etc/systemd/system/vat-kiosk.service": unit(`
# vat's UI full screen on tty1: cage (a Wayland kiosk) running Chromium.
[Unit]
Description=vat kiosk on tty1
After=vat.service systemd-user-sessions.service
Wants=vat.service
Conflicts=getty@tty1.service
After=getty@tty1.service

[Service]
User=vat
Group=vat
PAMName=login
TTYPath=/dev/tty1
TTYReset=yes
TTYVHangup=yes
TTYVTDisallocate=yes
UtmpIdentifier=tty1
UtmpMode=user
StandardInput=tty-fail
StandardOutput=journal
StandardError=journal
ExecStart=/usr/local/bin/vat-kiosk
Restart=always
RestartSec=2

[Install]
WantedBy=graphical.target
`),
    "/usr/local/bin/vat-kiosk": [
      0o755,
      `#!/bin/bash
# Waits for the daemon, then shows its UI signed in (the token never goes on a command line:
# Chromium opens a page of a private directory that forwards to the sign-in URL).
set -eu
until (exec 3<>/dev/tcp/127.0.0.1/${DAEMON_PORT}) 2>/dev/null; do sleep 1; done
until [ -s /var/lib/vat/token ]; do sleep 1; done
dir="\${XDG_RUNTIME_DIR:-/tmp}/vat-kiosk"
rm -rf "$dir"
mkdir -m 0700 -p "$dir"
token=$(head -n 1 /var/lib/vat/token)
url="http://127.0.0.1:${DAEMON_PORT}/signin#token=$token"
umask 077
printf '<!doctype html><meta charset="utf-8"><title>vat</title><script>location.replace(%s)</script>\\n' "'$url'" > "$dir/signin.html"
export WLR_RENDERER=pixman WLR_RENDERER_ALLOW_SOFTWARE=1 WLR_NO_HARDWARE_CURSORS=1
# (Not --app: with --kiosk under cage, Debian 12's Chromium 150 exits at once.)
cage -d -- chromium --ozone-platform=wayland --kiosk --no-first-run \\
  --no-default-browser-check --disable-gpu --disable-dev-shm-usage \\
  --user-data-dir="$dir/profile" "file://$dir/signin.html" &
pid=$!
# A new daemon (an update, a restart) has a new token: start again with it.
while kill -0 "$pid" 2>/dev/null; do
  sleep 5
  if [ "$(head -n 1 /var/lib/vat/token 2>/dev/null)" != "$token" ]; then
    kill "$pid"
    wait "$pid" || true
    exit 0
  fi
done
wait "$pid"
`,
    ],
    "/etc/systemd/system/vat-forward.socket": unit(`
# Tests only (kernel command line "vat.forward"): port ${FORWARD_PORT} of the guest's network
# to the daemon on its loopback, so QEMU's user networking can forward a host port to it.
[Unit]
Description=vat's port on the guest's network (tests)
ConditionKernelCommandLine=vat.forward

[Socket]
ListenStream=0.0.0.0:${FORWARD_PORT}

[Install]
WantedBy=sockets.target
`),
    "/etc/systemd/system/vat-forward.service": unit(`
[Unit]
Description=vat's port on the guest's network (tests)
Requires=vat-forward.socket
After=vat-forward.socket

[Service]
ExecStart=/lib/systemd/systemd-socket-proxyd 127.0.0.1:${DAEMON_PORT}
`),
  };
}

/**
 * How buildRoot customises the root: raise it when its steps change (the files it writes
 * are hashed on their own).
 */
const ROOT_RECIPE = 1;

/** Where the customised root of `pristine` is cached: keyed by everything that makes it. */
function rootDir(pristine: string): string {
  return `${CACHE}/root-${sha(pristine, JSON.stringify(rootFiles()), `${ROOT_RECIPE}`)}`;
}

/** Step 2: the customised root, its squashfs, kernel and initrd. */
async function buildRoot(pristine: string): Promise<string> {
  const out = rootDir(pristine);
  if (await exists(`${out}/filesystem.squashfs`)) return out;
  const tmp = `${out}.tmp`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp, { recursive: true });
  const tree = `${tmp}/tree`;
  log(`customising a copy of ${pristine}`);
  await run("cp", ["-a", "--reflink=auto", pristine, tree]);
  for (const [path, [mode, text]] of Object.entries(rootFiles())) {
    await Deno.mkdir(`${tree}${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
    await Deno.writeTextFile(`${tree}${path}`, text, { mode });
    await Deno.chmod(`${tree}${path}`, mode);
  }
  await run("chroot", [tree, "groupadd", "--system", "--gid", `${VAT_UID}`, "vat"]);
  await run("chroot", [
    tree,
    "useradd",
    "--system",
    "--uid",
    `${VAT_UID}`,
    "--gid",
    "vat",
    "--groups",
    "kvm,video,render,input",
    "--home-dir",
    "/var/lib/vat",
    "--no-create-home",
    "--shell",
    "/usr/sbin/nologin",
    "vat",
  ]);
  await Deno.mkdir(`${tree}/var/lib/vat`, { recursive: true });
  await run("chroot", [
    tree,
    "systemctl",
    "enable",
    "systemd-networkd.service",
    "vat.service",
    "vat-kiosk.service",
    "vat-forward.socket",
  ]);
  await run("chroot", [tree, "systemctl", "set-default", "graphical.target"]);
  // The root's password is locked: there is no login but the kiosk.
  await run("chroot", [tree, "passwd", "--lock", "root"]);
  const kernels = [...Deno.readDirSync(`${tree}/boot`)].map((e) => e.name)
    .filter((n) => n.startsWith("vmlinuz-")).sort();
  if (kernels.length === 0) throw new Error(`no kernel in ${tree}/boot`);
  const version = kernels[kernels.length - 1].slice("vmlinuz-".length);
  log(`initramfs with live-boot for ${version}`);
  await run("chroot", [tree, "update-initramfs", "-c", "-k", version]).catch(async () => {
    await run("chroot", [tree, "update-initramfs", "-u", "-k", version]);
  });
  await Deno.copyFile(`${tree}/boot/vmlinuz-${version}`, `${tmp}/vmlinuz`);
  await Deno.copyFile(`${tree}/boot/initrd.img-${version}`, `${tmp}/initrd.img`);
  await run("chroot", [tree, "apt-get", "clean"]);
  await Deno.writeTextFile(`${tree}/etc/machine-id`, "");
  log("mksquashfs (a few minutes)");
  await run("mksquashfs", [
    tree,
    `${tmp}/filesystem.squashfs`,
    "-comp",
    "zstd",
    "-Xcompression-level",
    "6",
    "-noappend",
    "-quiet",
    "-e",
    "boot",
  ]);
  await Deno.remove(tree, { recursive: true });
  await Deno.rename(tmp, out);
  await prune("root-", out);
  return out;
}

/** vat's sources that go into a release (the hash decides whether to publish again). */
async function sourcesHash(): Promise<string> {
  const files: string[] = ["main.ts", "deno.json", "deno.lock"];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(`${ROOT}/${dir}`)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (e.isFile && !e.name.includes("_test.")) files.push(path);
    }
  };
  await walk("vat");
  await walk("ui");
  const h = createHash("sha256");
  for (const f of files.sort()) {
    h.update(f).update("\0").update(await Deno.readFile(`${ROOT}/${f}`));
  }
  return h.digest("hex").slice(0, 16);
}

function vat(args: string[]): Promise<string> {
  return run(Deno.execPath(), ["run", "-A", `${ROOT}/main.ts`, ...args], { cwd: ROOT });
}

/** Step 3: the release repository with a release of the current sources. */
async function release(keyFile: string): Promise<{ repo: string; version: number }> {
  const repo = `${CACHE}/releases`;
  if (!(await exists(keyFile))) {
    log(`making the release key ${keyFile}`);
    await vat(["keygen", "--out", keyFile]);
  }
  if (!(await exists(`${repo}/repo.json`))) {
    await vat(["repo", "init", repo, "--kind", "release", "--publisher", `${keyFile}.pub`]);
  }
  const stamp = `${CACHE}/releases.sources`;
  const hash = await sourcesHash();
  const last = await Deno.readTextFile(stamp).catch(() => "");
  if (last.trim() !== hash) {
    log("publishing a release of vat's sources");
    await vat(["release", "publish", repo, "--key", keyFile, "--bundle", "--quiet"]);
    await Deno.writeTextFile(stamp, hash + "\n");
  }
  const list = JSON.parse(await vat(["release", "ls", repo, "--json"])) as { release: number }[];
  const versions = list.map((r) => r.release);
  return { repo, version: Math.max(...versions) };
}

/** Parses 512M, 2G (binary units) into bytes. */
function parseSize(text: string): number {
  const m = text.match(/^(\d+)([MG])$/i);
  if (!m) throw new Error(`--state-size ${text}: give a size like 512M or 2G`);
  return Number(m[1]) * (m[2].toUpperCase() === "G" ? 1 << 30 : 1 << 20);
}

const MiB = 1 << 20;

/** Step 4: the state partition and the image (seconds). */
async function assemble(options: {
  root: string;
  repo: string;
  keyFile: string;
  releaseUrl: string | null;
  config: Record<string, unknown>;
  kernelArgs: string[];
  stateSize: number;
  out: string;
}): Promise<void> {
  const work = await Deno.makeTempDir({ dir: CACHE, prefix: "assemble-" });
  try {
    const state = `${work}/state`;
    await Deno.mkdir(state);
    const pub = (await Deno.readTextFile(`${options.keyFile}.pub`)).trim();
    log("installing the newest release into the state partition's slot A");
    await vat([
      "update",
      "apply",
      "--state",
      state,
      "--release-repo",
      options.repo,
      "--release-key",
      `${options.keyFile}.pub`,
    ]);
    // The VAT keeps its release repository and the publisher key (docs/UPDATE.md).
    // (Both or neither: the daemon refuses a key without a repository.)
    const config: Record<string, unknown> = { ...options.config };
    if (options.releaseUrl) {
      Object.assign(config, { releaseRepo: options.releaseUrl, releaseKey: pub });
    }
    await Deno.writeTextFile(`${state}/config.json`, JSON.stringify(config, null, 2) + "\n");
    await run("chown", ["-R", `${VAT_UID}:${VAT_UID}`, state]);
    await Deno.chmod(state, 0o700);

    // VAT-LIVE: the kernel, the initramfs, the root, and GRUB's menu (with the image's
    // kernel command line, written here so that it costs no rebuild of the root).
    const boot = `${work}/boot`;
    await Deno.mkdir(`${boot}/live`, { recursive: true });
    let bootBytes = 0;
    for (const f of ["vmlinuz", "initrd.img", "filesystem.squashfs"]) {
      await Deno.link(`${options.root}/${f}`, `${boot}/live/${f}`);
      bootBytes += (await Deno.stat(`${options.root}/${f}`)).size;
    }
    const cmdline = [...KERNEL_ARGS, ...options.kernelArgs].join(" ");
    await Deno.writeTextFile(
      `${boot}/live/grub.cfg`,
      `set timeout=2\nset default=0\n` +
        `menuentry "vat" {\n  linux /live/vmlinuz ${cmdline}\n  initrd /live/initrd.img\n}\n`,
    );
    const bootSize = Math.ceil((bootBytes * 1.05 + 64 * MiB) / MiB) * MiB;
    await run("mkfs.ext4", [
      "-q",
      "-F",
      "-L",
      "VAT-LIVE",
      "-d",
      boot,
      `${work}/boot.part`,
      `${bootSize / 1024}k`,
    ]);
    await run("mkfs.ext4", [
      "-q",
      "-F",
      "-L",
      "VAT-STATE",
      // The partition's root is /var/lib/vat: the vat user's (mkfs -d copies only below it).
      "-E",
      `root_owner=${VAT_UID}:${VAT_UID}`,
      "-d",
      state,
      `${work}/state.part`,
      `${options.stateSize / 1024}k`,
    ]);
    // The EFI system partition: GRUB as the removable-media loader EFI/BOOT/BOOTX64.EFI,
    // with a built-in menu that finds VAT-LIVE by label and reads its grub.cfg.
    await Deno.writeTextFile(
      `${work}/embedded.cfg`,
      "insmod all_video\nsearch --no-floppy --label VAT-LIVE --set=root\n" +
        "configfile ($root)/live/grub.cfg\n",
    );
    await run("grub-mkstandalone", [
      "-O",
      "x86_64-efi",
      "-o",
      `${work}/BOOTX64.EFI`,
      "--modules=part_gpt part_msdos ext2 search search_label configfile linux normal echo all_video",
      "--locales=",
      "--fonts=",
      `boot/grub/grub.cfg=${work}/embedded.cfg`,
    ]);
    const espSize = 64 * MiB;
    await run("mkfs.vfat", ["-C", "-n", "VAT-EFI", `${work}/esp.part`, `${espSize / 1024}`]);
    await run("mmd", ["-i", `${work}/esp.part`, "::/EFI", "::/EFI/BOOT"]);
    await run("mcopy", ["-i", `${work}/esp.part`, `${work}/BOOTX64.EFI`, "::/EFI/BOOT/"]);

    const tmpOut = `${options.out}.tmp`;
    const parts = [
      { file: `${work}/esp.part`, size: espSize, type: "U", name: "VAT-EFI" },
      { file: `${work}/boot.part`, size: bootSize, type: "L", name: "VAT-LIVE" },
      { file: `${work}/state.part`, size: options.stateSize, type: "L", name: "VAT-STATE" },
    ];
    const total = MiB + parts.reduce((n, p) => n + p.size, 0) + MiB;
    const f = await Deno.open(tmpOut, { create: true, write: true, truncate: true });
    await f.truncate(total);
    f.close();
    let start = MiB;
    let layout = "label: gpt\n";
    for (const p of parts) {
      layout += `start=${start / 512}, size=${p.size / 512}, type=${p.type}, name="${p.name}"\n`;
      start += p.size;
    }
    const child = new Deno.Command("sfdisk", {
      args: ["--quiet", tmpOut],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(layout));
    await w.close();
    const done = await child.output();
    if (!done.success) throw new Error(`sfdisk: ${new TextDecoder().decode(done.stderr)}`);
    start = MiB;
    for (const p of parts) {
      await run("dd", [
        `if=${p.file}`,
        `of=${tmpOut}`,
        "bs=1M",
        `seek=${start / MiB}`,
        "conv=notrunc,sparse",
        "status=none",
      ]);
      start += p.size;
    }
    await Deno.rename(tmpOut, options.out);
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

export interface LiveImage {
  image: string;
  kernel: string;
  initrd: string;
  kernelArgs: string[];
  releaseRepo: string;
  releaseKey: string;
  release: number;
}

/** Where the squashfs of the current inputs is, if it was built (no building). */
export async function builtRoot(): Promise<string | null> {
  const mirror = debianMirror();
  const pkey = plainSha(`${SUITE}\n${mirror}\nminbase\n${PACKAGES.join(",")}\n`);
  const pristine = `${CACHE}/rootfs-${pkey}`;
  const root = rootDir(pristine);
  return (await exists(`${root}/filesystem.squashfs`)) ? root : null;
}

export async function buildLiveImage(options: {
  out?: string;
  stateSize?: number;
  releaseUrl?: string | null;
  /** More settings for the VAT's config.json (e.g. `updateInterval`). */
  config?: Record<string, unknown>;
  /** Added to KERNEL_ARGS in the boot menu (e.g. `console=ttyS0`). */
  kernelArgs?: string[];
  keyFile?: string;
}): Promise<LiveImage> {
  if (Deno.uid() !== 0) throw new Error("building the live image needs root (debootstrap, chroot)");
  for (
    const program of [
      "debootstrap",
      "mksquashfs",
      "mkfs.ext4",
      "sfdisk",
      "grub-mkstandalone",
      "mkfs.vfat",
      "mcopy",
    ]
  ) {
    const found = (Deno.env.get("PATH") ?? "").split(":").concat("/usr/sbin", "/sbin")
      .some((dir) => dir !== "" && existsSync(`${dir}/${program}`));
    if (!found) {
      throw new Error(
        `${program} is not installed: apt-get install -y debootstrap squashfs-tools e2fsprogs fdisk grub-efi-amd64-bin dosfstools mtools`,
      );
    }
  }
  await Deno.mkdir(CACHE, { recursive: true });
  const pristine = await debootstrap(debianMirror());
  const root = await buildRoot(pristine);
  const keyFile = options.keyFile ?? `${CACHE}/release.key`;
  const { repo, version } = await release(keyFile);
  const out = options.out ?? `${CACHE}/vat-live.img`;
  await assemble({
    root,
    repo,
    keyFile,
    releaseUrl: options.releaseUrl ?? null,
    config: options.config ?? {},
    kernelArgs: options.kernelArgs ?? [],
    stateSize: options.stateSize ?? 2 * (1 << 30),
    out,
  });
  return {
    image: out,
    kernel: `${root}/vmlinuz`,
    initrd: `${root}/initrd.img`,
    kernelArgs: KERNEL_ARGS,
    releaseRepo: repo,
    releaseKey: keyFile,
    release: version,
  };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      "state-size": { type: "string" },
      "release-url": { type: "string" },
      "release-key": { type: "string" },
      "kernel-args": { type: "string" },
      json: { type: "boolean" },
    },
  });
  try {
    if (positionals.length > 1) throw new Error("usage: build_live_image.ts [OUT] [options]");
    const image = await buildLiveImage({
      out: positionals[0],
      stateSize: values["state-size"] ? parseSize(values["state-size"]) : undefined,
      releaseUrl: values["release-url"] ?? null,
      keyFile: values["release-key"],
      kernelArgs: values["kernel-args"]?.split(/\s+/).filter((a) => a !== ""),
    });
    if (values.json) console.log(JSON.stringify(image, null, 2));
    else console.log(`live image: ${image.image} (release ${image.release})`);
  } catch (err) {
    console.error(`build_live_image: ${err instanceof Error ? err.message : err}`);
    Deno.exit(1);
  }
}
