/**
 * `deno task bench [NAME] [ARGS...]`: runs one benchmark of `bench/`, or lists them.
 * Benchmarks are not tests: they print figures and ratios against peer tools.
 *
 * `deno task bench all [--short] [--only a,b] [--keep c,d]` runs every bench in turn
 * (each installs the peers it needs, bench/peers.ts), then gathers what each wrote
 * (`bench/out/NAME.result.json`, bench/results.ts) into one machine-readable file,
 * `bench/out/results-DATE.json`, and the README's tables with their method lines,
 * `bench/out/tables.md`. `--short` runs each in its short mode (figures for checking the
 * pipeline, not for the README). `--keep` takes the named benches' results from their
 * last run instead of running them again (a bench of an hour, run on its own with the
 * same arguments); each result keeps its own command, commit and times, and a kept
 * result from a short run or other arguments is refused.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type BenchResult, resultPath, tablesMarkdown } from "./results.ts";

interface _Bench {
  what: string;
  /** Arguments of the full run, and of the short one. */
  full: string[];
  short: string[];
  /** False for benches that print their figures but write no result for `bench all`. */
  inAll?: boolean;
}

const BENCHES: Record<string, _Bench> = {
  publish: {
    what: "publish speed and update bytes against casync, qemu-img, rsync and zstd",
    full: ["--runs", "3"],
    short: ["--speed-only", "--runs", "1"],
  },
  nbd: {
    what: "NBD reads warm and cold against nbdkit, and memory",
    full: [],
    short: ["--quick"],
  },
  backup: {
    what: "backup of office-like write traces over 384 kbit/s: pending at idle, bytes, vs restic",
    full: [],
    short: ["--quick"],
  },
  boot: {
    what: "boot to ready: warm and cold over emulated links, against local QEMU and nbdkit curl",
    full: [],
    short: ["--quick"],
  },
  prefetch: {
    what: "boot to ready from an empty cache: no trace, trace replay, trace + prefetch",
    full: ["--rounds", "3"],
    short: ["--appliance", "busybox", "--rounds", "1"],
  },
  kdf: {
    what: "one login's key-slot KDF: scrypt (node:crypto) against Argon2id (hash-wasm)",
    full: [],
    short: [],
    inAll: false,
  },
  login: {
    what: "a user's login time: online (directory on disk, vat serve) and offline",
    full: [],
    short: [],
    inAll: false,
  },
};

const _OUT_DIR = new URL("./out/", import.meta.url).pathname;

async function _runOne(name: string, args: string[]): Promise<number> {
  const script = new URL(`./${name}.ts`, import.meta.url).pathname;
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  return result.code;
}

/** A bench's result from its last run, if that run had the arguments `bench all` gives it. */
async function _kept(name: string, args: string[], short: boolean): Promise<BenchResult> {
  const result: BenchResult = JSON.parse(await Deno.readTextFile(resultPath(name)));
  const wanted = `deno run -A bench/${name}.ts${args.length ? " " + args.join(" ") : ""}`;
  if (result.short !== short || result.command !== wanted) {
    throw new Error(`kept result was made by "${result.command}", not "${wanted}"`);
  }
  console.error(`\n[bench all] ${name}: kept from ${result.startedAt} (${result.command})`);
  return result;
}

async function _runAll(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { short: { type: "boolean" }, only: { type: "string" }, keep: { type: "string" } },
  });
  const names = values.only
    ? values.only.split(",")
    : Object.keys(BENCHES).filter((n) => BENCHES[n].inAll !== false);
  const keep = new Set(values.keep ? values.keep.split(",") : []);
  for (const n of [...names, ...keep]) {
    if (!(n in BENCHES)) throw new Error(`no bench named ${n}`);
  }
  const startedAt = new Date().toISOString();
  const results: BenchResult[] = [];
  const failed: string[] = [];
  for (const name of names) {
    const args = values.short ? BENCHES[name].short : BENCHES[name].full;
    if (keep.has(name)) {
      try {
        results.push(await _kept(name, args, !!values.short));
      } catch (err) {
        failed.push(`${name}: ${(err as Error).message}`);
      }
      continue;
    }
    console.error(`\n[bench all] ${name} ${args.join(" ")}`);
    // A result left from an earlier run must not pass for this one's.
    await Deno.remove(resultPath(name)).catch(() => {});
    const code = await _runOne(name, args);
    try {
      if (code !== 0) throw new Error(`exit code ${code}`);
      results.push(JSON.parse(await Deno.readTextFile(resultPath(name))));
    } catch (err) {
      failed.push(`${name}: ${(err as Error).message}`);
    }
  }
  await Deno.mkdir(_OUT_DIR, { recursive: true });
  const stamp = startedAt.replace(/[:]/g, "").replace(/\..*/, "");
  const json = `${_OUT_DIR}results-${stamp}.json`;
  await Deno.writeTextFile(
    json,
    JSON.stringify(
      { startedAt, finishedAt: new Date().toISOString(), short: !!values.short, failed, results },
      null,
      2,
    ) + "\n",
  );
  await Deno.writeTextFile(`${_OUT_DIR}tables.md`, tablesMarkdown(results));
  console.log(`\nwritten: ${json} and ${_OUT_DIR}tables.md`);
  if (failed.length) console.error(`benches that failed:\n  ${failed.join("\n  ")}`);
  return failed.length ? 1 : 0;
}

const [name, ...args] = Deno.args;
if (name === "all") Deno.exit(await _runAll(args));
if (!name || !(name in BENCHES)) {
  console.log(
    "usage: deno task bench NAME [ARGS...] | deno task bench all [--short] [--only a,b]\n",
  );
  for (const [n, b] of Object.entries(BENCHES)) console.log(`  ${n.padEnd(10)} ${b.what}`);
  console.log(`  ${"all".padEnd(10)} every bench, then bench/out/results-DATE.json and tables.md`);
  Deno.exit(name ? 2 : 0);
}
Deno.exit(await _runOne(name, args));
