/**
 * The peer tools the benchmarks run (fio, casync, restic, nbdkit, rsync, zstd, ...),
 * installed the way `npm test` installs the test peers (scripts/bootstrap.mjs): the
 * Debian packages of the "bench" section of scripts/packages.json, with apt-get when
 * run as root, otherwise an error that gives the exact command.
 *
 * @module
 */

import packages from "../scripts/packages.json" with { type: "json" };

/** The "bench" section: Debian package -> the programs (or absolute files) it installs. */
export const BENCH_PACKAGES: Record<string, string[]> = packages.bench;

const _SEARCH_PATH = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin", "/usr/bin"];

/** Whether `program` (a name on PATH, or an absolute path) is there. */
export function hasProgram(program: string): boolean {
  const candidates = program.startsWith("/") ? [program] : _SEARCH_PATH.filter((d) => d).map((
    d,
  ) => `${d}/${program}`);
  return candidates.some((path) => {
    try {
      return Deno.statSync(path).isFile;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return false;
      throw err;
    }
  });
}

/**
 * Makes sure every program of `programs` is installed, installing the Debian packages of
 * the bench section that provide the missing ones. Throws when a program is in no bench
 * package (a bench asking for an undeclared peer), or when they are missing and this is
 * not root (with the command to run).
 */
export async function ensureBenchPeers(programs: string[]): Promise<void> {
  const missing = new Set<string>();
  for (const program of programs) {
    if (hasProgram(program)) continue;
    const pkg = Object.entries(BENCH_PACKAGES).find(([, ps]) => ps.includes(program))?.[0];
    if (!pkg) {
      throw new Error(
        `${program} is missing and no package of the "bench" section of scripts/packages.json ` +
          `provides it: add its Debian package there (dpkg -S $(command -v ${program}))`,
      );
    }
    missing.add(pkg);
  }
  if (missing.size === 0) return;
  const list = [...missing].join(" ");
  if (Deno.uid() !== 0 || !hasProgram("apt-get")) {
    throw new Error(
      `the benchmark needs these Debian packages, which are not installed:\n  ${list}\n` +
        `install them as root with:\n  apt-get update && apt-get install -y ${list}`,
    );
  }
  console.error(`[bench] installing Debian packages: ${list}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  for (
    const args of [["update", "-qq"], [
      "install",
      "-y",
      "-qq",
      "--no-install-recommends",
      ...missing,
    ]]
  ) {
    const out = await new Deno.Command("apt-get", {
      args,
      env,
      stdout: "inherit",
      stderr: "inherit",
    })
      .output();
    if (!out.success) throw new Error(`apt-get ${args.join(" ")} failed: install ${list} by hand`);
  }
  const still = programs.filter((p) => !hasProgram(p));
  if (still.length) {
    throw new Error(`still missing after apt-get install ${list}: ${still.join(" ")}`);
  }
}
