// The README's two commands, `npm start` and `npm test`, come here first: this script
// installs what vat needs on a fresh Debian machine (Deno from npm; Debian packages
// when run as root, otherwise it prints the exact command), then hands over to Deno.
// It is plain Node.js because Deno is not there yet when it starts.

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const mode = process.argv[2];

// Debian packages, each with a file that shows it is installed.
const START_PACKAGES = {
  "qemu-utils": "/usr/bin/qemu-img",
};
const TEST_PACKAGES = {
  ...START_PACKAGES,
  "qemu-system-x86": "/usr/bin/qemu-system-x86_64",
  "nbdkit": "/usr/sbin/nbdkit",
  "libnbd-bin": "/usr/bin/nbdcopy",
  "nginx": "/usr/sbin/nginx",
  "zstd": "/usr/bin/zstd",
  "ceph-mon": "/usr/bin/ceph-mon",
  "ceph-osd": "/usr/bin/ceph-osd",
  "radosgw": "/usr/bin/radosgw",
  "ceph-common": "/usr/bin/radosgw-admin",
};

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: "inherit", cwd: root, ...options });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

function ensureDebianPackages(packages) {
  const missing = Object.entries(packages).filter(([, file]) => !existsSync(file)).map(([p]) => p);
  if (missing.length === 0) return;
  const isRoot = process.getuid?.() === 0;
  if (!isRoot || !existsSync("/usr/bin/apt-get")) {
    console.error(
      `vat needs these Debian packages, which are not installed:\n  ${missing.join(" ")}\n` +
        `install them as root with:\n  apt-get update && apt-get install -y ${missing.join(" ")}`,
    );
    process.exit(1);
  }
  console.error(`installing Debian packages: ${missing.join(" ")}`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  if (
    run("apt-get", ["update", "-qq"], { env }) !== 0 ||
    run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { env }) !== 0
  ) {
    console.error(`apt-get could not install: ${missing.join(" ")}`);
    process.exit(1);
  }
}

function ensureDeno() {
  const deno = join(root, "node_modules", ".bin", "deno");
  if (!existsSync(deno)) {
    console.error("installing Deno from npm (npm install)");
    if (run("npm", ["install", "--no-audit", "--no-fund"]) !== 0) {
      console.error("npm install failed: vat needs the npm package deno (see package.json)");
      process.exit(1);
    }
  }
  return deno;
}

if (mode === "start") {
  ensureDebianPackages(START_PACKAGES);
  const deno = ensureDeno();
  process.exit(run(deno, ["run", "-A", "main.ts", ...process.argv.slice(3)]));
} else if (mode === "test") {
  ensureDebianPackages(TEST_PACKAGES);
  const deno = ensureDeno();
  process.exit(run(deno, ["task", "test", ...process.argv.slice(3)]));
} else {
  console.error("usage: node scripts/bootstrap.mjs start|test [ARGS...]");
  process.exit(2);
}
