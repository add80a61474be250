// The README's two commands, `npm start` and `npm test`, come here first: this script
// installs what vat needs on a fresh Debian machine (Deno from npm; Debian packages
// when run as root, otherwise it prints the exact command), then hands over to Deno.
// It is plain Node.js because Deno is not there yet when it starts.

import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const mode = process.argv[2];

// Debian packages, each with the programs (or, for the kernel, a file) that vat or its
// tests run from it, in scripts/packages.json: `start` for `npm start` (the demo
// appliance needs QEMU and what the demo is built from), `test` added for `npm test`
// (the peers vat is checked against). tests/install_coverage_test.ts fails when vat or a
// test spawns a program that no list names, and checks each name against `dpkg -S`.
const PACKAGES = JSON.parse(readFileSync(join(root, "scripts", "packages.json"), "utf8"));
const START_PACKAGES = PACKAGES.start;
const TEST_PACKAGES = { ...PACKAGES.start, ...PACKAGES.test };

const SEARCH_PATH = [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/sbin", "/usr/bin"];
function hasProgram(name) {
  if (name.startsWith("/")) {
    const dir = dirname(name);
    const prefix = name.slice(dir.length + 1).replace("*", "");
    return existsSync(dir) && readdirSync(dir).some((f) => f.startsWith(prefix));
  }
  return SEARCH_PATH.some((dir) => dir && existsSync(join(dir, name)));
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: "inherit", cwd: root, ...options });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

function ensureDebianPackages(packages) {
  const missing = Object.entries(packages)
    .filter(([, programs]) => !programs.every(hasProgram))
    .map(([p]) => p);
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

// Deno comes from the npm package `deno`, installed into .cache/deno (not into
// node_modules, which Deno itself manages for the project's own npm imports).
function ensureDeno() {
  const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).config.deno;
  const prefix = join(root, ".cache", "deno");
  const deno = join(prefix, "node_modules", ".bin", "deno");
  const installed = join(prefix, "node_modules", "deno", "package.json");
  if (!existsSync(deno) || JSON.parse(readFileSync(installed, "utf8")).version !== version) {
    console.error(`installing Deno ${version} from npm into .cache/deno`);
    const status = run("npm", [
      "install",
      "--no-audit",
      "--no-fund",
      "--no-save",
      "--prefix",
      prefix,
      `deno@${version}`,
    ]);
    if (status !== 0 || !existsSync(deno)) {
      console.error(
        `npm could not install deno@${version}; vat needs it (npm install deno@${version})`,
      );
      process.exit(1);
    }
  }
  return deno;
}

if (mode === "start") {
  ensureDebianPackages(START_PACKAGES);
  const deno = ensureDeno();
  // `npm start` alone runs the daemon with the demo appliance; `npm start -- ARGS`
  // runs `vat ARGS`.
  const args = process.argv.slice(3);
  // vat's V8 flags (vat/v8_flags.ts; vat/v8_flags_test.ts checks this copy).
  const v8Flags = "--v8-flags=--max-semi-space-size=1";
  process.exit(run(deno, ["run", "-A", v8Flags, "main.ts", ...(args.length ? args : ["--demo"])]));
} else if (mode === "test") {
  ensureDebianPackages(TEST_PACKAGES);
  const deno = ensureDeno();
  process.exit(run(deno, ["task", "test", ...process.argv.slice(3)]));
} else {
  console.error("usage: node scripts/bootstrap.mjs start|test [ARGS...]");
  process.exit(2);
}
