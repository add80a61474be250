/**
 * Every program that vat or its tests spawn is installed by the README's commands: the
 * Debian packages of scripts/packages.json (which `npm start` and `npm test` install
 * through scripts/bootstrap.mjs), or an Essential package that every Debian system has.
 * The sites come from reading the sources (tests/helpers/spawn_sites.ts); a site whose
 * program is a variable is declared below, next to what it can be. bench/ is not
 * scanned: benchmarks are run by hand and install their own peers from the "bench"
 * section (bench/peers.ts), whose package names are checked here where installed.
 */

import assert from "node:assert/strict";
import packages from "../scripts/packages.json" with { type: "json" };
import { scanSources, scanSpawnSites, type SpawnSite } from "./helpers/spawn_sites.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const SCANNED = ["vat", "tests", "scripts"];

/** Sites whose program is not written where it is spawned: file, expression, programs. */
const DECLARED: { file: string; expr: string; programs: string[] }[] = [
  // spec.qemuBinary ?? QEMU_BINARY: tests hand in stand-ins they write themselves.
  { file: "vat/vmm/virtual_machine.ts", expr: "binary", programs: ["qemu-system-x86_64"] },
  // options.qemuBinary ?? QEMU_BINARY: the KVM probe's QEMU (stand-ins in its tests).
  { file: "vat/vmm/kvm_probe.ts", expr: "qemuBinary", programs: ["qemu-system-x86_64"] },
  // The first of BROWSERS found on PATH; only chromium is installed, the rest are used
  // when a machine has them.
  { file: "vat/daemon/open_browser.ts", expr: "launch.command", programs: ["chromium"] },
  // findBusybox(): Debian's busybox-static.
  { file: "vat/demo/busybox_appliance.ts", expr: "busybox", programs: ["busybox"] },
  // A release's own Deno runtime (the npm package deno's binary), run on its bundle.
  { file: "vat/update/release_publish.ts", expr: "runtime", programs: [] },
  // The vat binary an administrator publishes (its --version).
  { file: "vat/update/release_publish.ts", expr: "input.binary", programs: [] },
  // The compiled vat, copied elsewhere.
  { file: "tests/compile_test.ts", expr: "copy", programs: [] },
  // The launcher that vat writes (its commands: SHELL_SCRIPTS).
  { file: "tests/launcher_test.ts", expr: "`${dir}/vat-launcher.sh`", programs: [] },
  { file: "tests/update_test.ts", expr: "`${installDir}/vat-launcher.sh`", programs: [] },
  // NGINX: /usr/sbin/nginx or /usr/bin/nginx.
  { file: "tests/fixtures/nginx.ts", expr: "binary", programs: ["nginx"] },
];

/**
 * What the shell scripts of each file that runs `sh` or writes a `#!/bin/sh` script
 * run (dash builtins aside).
 */
const SHELL_SCRIPTS: Record<string, string[]> = {
  "tests/backup_test.ts": ["find", "sort", "xargs", "sha256sum"],
  // GUARD runs the daemons it is given.
  "tests/fixtures/ceph.ts": ["ceph-mon", "ceph-osd", "radosgw"],
  // The stand-in browser.
  "tests/remote_display_test.ts": ["sleep"],
  // Stand-in slots' `launch` scripts: builtins and sleep.
  "tests/launcher_test.ts": ["sleep"],
  // A slot's `launch` script: the slot's own runtime or binary.
  "vat/update/install_dir.ts": ["dirname"],
  // The launcher, written by install_dir.ts: its commands.
  "vat/update/launcher_script.ts": ["sed", "head", "mv", "rm", "cat", "sleep", "sync"],
  // A stand-in vat binary that only says its version (shell builtins).
  "tests/update_freshness_test.ts": [],
  // `command -v rsync` (a builtin): the test measures rsync where it is installed.
  "tests/update_test.ts": [],
  // A stand-in QEMU whose KVM hangs Linux guests: bash, then the real QEMU.
  "tests/helpers/hanging_kvm_qemu.ts": ["bash", "qemu-system-x86_64"],
  // Stand-in QEMUs for the KVM probe: bash builtins only.
  "tests/kvm_hang_test.ts": ["bash"],
  // An empty script, to be found on PATH.
  "vat/daemon/open_browser_test.ts": [],
  // The guest's /sbin/poweroff, run inside the guest by its busybox.
  "vat/demo/busybox_appliance.ts": [],
  // The live image's /usr/local/bin/vat-kiosk, run inside the image (cage, chromium: the
  // image's own packages, installed by debootstrap).
  "scripts/build_live_image.ts": [],
};

type _Section = Record<string, string[]>;
const START = packages.start as _Section;
const TEST = packages.test as _Section;
const ESSENTIAL = packages.essential as _Section;
const BENCH = packages.bench as _Section;
const START_OPTIONAL = packages.startOptional as Record<string, string>;

function _programs(...sections: _Section[]): Set<string> {
  return new Set(sections.flatMap((s) => Object.values(s).flat()));
}

/** Every site, with the declared and shell-script ones filled in; throws on the unknown. */
async function _allSites(): Promise<SpawnSite[]> {
  const scan = await scanSpawnSites(ROOT, SCANNED);
  assert.deepEqual(
    scan.childProcessImports,
    [],
    "these files spawn through node:child_process, which the scan does not follow",
  );
  const sites = [...scan.sites];
  const unknown: string[] = [];
  for (const site of scan.unresolved) {
    const declared = DECLARED.find((d) => d.file === site.file && d.expr === site.expr);
    if (!declared) unknown.push(`${site.file}:${site.line} spawns \`${site.expr}\``);
    else for (const program of declared.programs) sites.push({ ...site, program });
  }
  assert.deepEqual(
    unknown,
    [],
    "programs named by a variable: declare each in DECLARED of tests/install_coverage_test.ts",
  );
  const stale = DECLARED.filter((d) =>
    !scan.unresolved.some((s) => s.file === d.file && s.expr === d.expr)
  );
  assert.deepEqual(stale, [], "DECLARED names sites that no longer exist");
  const scripts = [
    ...scan.sites.filter((s) => s.program === "sh" || s.program === "bash"),
    ...scan.scriptsWritten,
  ];
  for (const site of scripts) {
    const programs = SHELL_SCRIPTS[site.file];
    assert.ok(
      programs,
      `${site.file}:${site.line} runs or writes a shell script: list what it runs in SHELL_SCRIPTS`,
    );
    for (const program of programs) sites.push({ ...site, program });
  }
  const staleScripts = Object.keys(SHELL_SCRIPTS).filter((file) =>
    !scripts.some((s) => s.file === file)
  );
  assert.deepEqual(staleScripts, [], "SHELL_SCRIPTS names files that run no shell script");
  return sites;
}

function _uncovered(sites: SpawnSite[], covered: Set<string>): string[] {
  return sites.filter((s) => !covered.has(s.program)).map((s) =>
    `${s.program} (${s.file}:${s.line})`
  );
}

Deno.test("every program vat and its tests spawn is installed by `npm test` or is Essential", async () => {
  const sites = await _allSites();
  assert.ok(sites.some((s) => s.program === "sfdisk"), "the scan finds ext4_unused_test's sfdisk");
  assert.deepEqual(
    _uncovered(sites, _programs(START, TEST, ESSENTIAL)),
    [],
    "add each program's Debian package (dpkg -S $(command -v PROGRAM)) to scripts/packages.json",
  );
});

Deno.test("every program vat itself spawns is installed by `npm start`, Essential, or optional", async () => {
  const sites = (await _allSites()).filter((s) =>
    s.file.startsWith("vat/") && !/(_test\.tsx?$|\/_test_)/.test(s.file)
  );
  const covered = _programs(START, ESSENTIAL);
  for (const program of Object.keys(START_OPTIONAL)) covered.add(program);
  assert.deepEqual(
    _uncovered(sites, covered),
    [],
    "add each program's package to `start` of scripts/packages.json (or to `startOptional`, " +
      "with the feature that needs it)",
  );
});

Deno.test({
  name: "scripts/packages.json names each program's own Debian package (dpkg -S)",
  // Off Debian there is no package database to check against.
  ignore: _which("dpkg-query") === null,
}, async () => {
  const wrong: string[] = [];
  for (const [pkg, programs] of Object.entries({ ...START, ...TEST, ...ESSENTIAL })) {
    for (const program of programs) {
      if (program.startsWith("/")) continue; // the kernel's file, matched by a glob
      const path = _which(program);
      if (!path) {
        wrong.push(`${program} is not installed (npm test installs ${pkg})`);
        continue;
      }
      const owner = await _owner(path);
      if (owner !== pkg) wrong.push(`${program} (${path}) is in ${owner}, not ${pkg}`);
    }
  }
  // The bench peers are installed by the benches themselves: checked where they are.
  for (const [pkg, programs] of Object.entries(BENCH)) {
    for (const program of programs) {
      const path = program.startsWith("/") ? program : _which(program);
      if (!path || !(await _exists(path))) continue;
      const owner = await _owner(path);
      if (owner !== pkg) wrong.push(`${program} (${path}) is in ${owner}, not ${pkg} (bench)`);
    }
  }
  for (const pkg of Object.keys(ESSENTIAL)) {
    const essential = await _output("dpkg-query", ["-W", "-f=${Essential}", pkg]);
    if (essential !== "yes") wrong.push(`${pkg} is not Essential: move it to \`test\``);
  }
  assert.deepEqual(wrong, []);
});

Deno.test("scanSources() follows helpers, constants and ternaries to the programs they spawn", () => {
  const scan = scanSources([
    {
      file: "a.ts",
      text: `
export const TOOL = "/usr/bin/tool-a";
const LOCAL = "tool-b";
export async function runIt(what: string, program: string, args: string[]) {
  return await SPAWN(program, { args }).output();
}
function _runArray(argv: string[]) { return SPAWN(argv[0], {}); }
function _viaHelper(cmd: string) { return runIt("x", cmd, []); }
SPAWN(flag ? LOCAL : "tool-c", {});
_runArray(["tool-d", "-v"]);
_viaHelper("tool-e");
SPAWN(Deno.execPath(), {});
SPAWN(somewhere.else, {});
`.replaceAll("SPAWN", "new Deno" + ".Command"),
    },
    { file: "b.ts", text: `import { runIt } from "./a.ts";\nrunIt("y", TOOL, []);\n` },
    { file: "c.ts", text: `function runIt(p: string) {}\nrunIt("not-a-program");\n` },
  ]);
  assert.deepEqual(
    scan.sites.map((s) => `${s.program} ${s.file}:${s.line}`).sort(),
    ["tool-a b.ts:2", "tool-b a.ts:9", "tool-c a.ts:9", "tool-d a.ts:10", "tool-e a.ts:11"],
  );
  assert.deepEqual(scan.unresolved, [{ file: "a.ts", line: 13, expr: "somewhere.else" }]);
});

function _which(program: string): string | null {
  for (const dir of [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"]) {
    if (!dir) continue;
    try {
      if (Deno.statSync(`${dir}/${program}`).isFile) return `${dir}/${program}`;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  return null;
}

/** The package that owns `path`, trying the /usr-merged and the real path too. */
async function _owner(path: string): Promise<string> {
  const name = path.slice(path.lastIndexOf("/") + 1);
  const candidates = [path, Deno.realPathSync(path), `/bin/${name}`, `/sbin/${name}`];
  for (const candidate of candidates) {
    const out = await new Deno.Command("dpkg", {
      args: ["-S", candidate],
      stdout: "piped",
      stderr: "null",
    }).output();
    const line = new TextDecoder().decode(out.stdout).split("\n")
      .find((l) => !l.startsWith("diversion"));
    if (out.success && line) return line.split(":")[0];
  }
  return "no package";
}

async function _exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

async function _output(program: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(program, { args, stdout: "piped" }).output();
  return new TextDecoder().decode(out.stdout).trim();
}
