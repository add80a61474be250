/**
 * The fault-injection suite's shared parts (tests/fault_suite_test.ts): a seeded
 * pseudo-random generator, `vat` children that are killed with SIGKILL at chosen
 * moments, kill and invariant counts, and failure messages that carry the seed.
 *
 * The suite's seed comes from `VAT_FAULT_SEED` or is drawn at random; it is printed
 * when the suite starts and in every failure, and each area derives its own generator
 * from it and the area's name, so `VAT_FAULT_SEED=S VAT_FAULT_AREAS=AREA deno test -A
 * tests/fault_suite_test.ts` replays one area's choices (where to write,
 * how long to wait before each kill). The kills themselves land at wall-clock times,
 * so a replay is as close as two runs of the same processes can be, not byte-exact.
 *
 * @module
 */

import { VAT_MAIN } from "./vat_cli.ts";

/** The suite's seed: `VAT_FAULT_SEED`, or random. */
export const SUITE_SEED: number = _suiteSeed();

function _suiteSeed(): number {
  const given = Deno.env.get("VAT_FAULT_SEED");
  if (given !== undefined && given !== "") {
    const n = Number(given);
    if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) {
      throw new Error(`VAT_FAULT_SEED="${given}" is not an integer from 0 to 4294967295`);
    }
    return n;
  }
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/** What one area did, for the suite's total. */
export interface AreaResult {
  area: string;
  kills: number;
  /** Kills that found the process already gone (not counted in `kills`). */
  missed: number;
  invariants: Map<string, number>;
  seconds: number;
}

/** Every area that finished in this process, in order. */
export const AREA_RESULTS: AreaResult[] = [];

/** A command's exit and output. */
export interface VatResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** One area of the suite: its generator, its kills, its checks, its children. */
export class FaultArea {
  readonly name: string;
  readonly seed: number;
  /** The area's scratch directory (removed at the end). */
  readonly dir: string;
  kills = 0;
  missed = 0;
  readonly #invariants = new Map<string, number>();
  readonly #killPoints = new Map<string, number>();
  readonly #children = new Set<VatChild>();
  #state: number;

  constructor(name: string, dir: string) {
    this.name = name;
    this.dir = dir;
    // FNV-1a of the name, mixed with the suite's seed: areas draw independently.
    let h = 0x811c9dc5 ^ SUITE_SEED;
    for (const c of new TextEncoder().encode(name)) h = Math.imul(h ^ c, 0x01000193) >>> 0;
    this.seed = h >>> 0;
    this.#state = this.seed;
  }

  /** A uniform number in [0, 1) (mulberry32). */
  random(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** A uniform number in [lo, hi). */
  between(lo: number, hi: number): number {
    return lo + (hi - lo) * this.random();
  }

  /** A uniform integer in [lo, hi). */
  int(lo: number, hi: number): number {
    return Math.floor(this.between(lo, hi));
  }

  /** Counts one check of invariant `name` (it held). */
  checked(name: string): void {
    this.#invariants.set(name, (this.#invariants.get(name) ?? 0) + 1);
  }

  /** Counts a kill that landed at `point` (e.g. "mid-upload"), for the summary. */
  killedAt(point: string): void {
    this.#killPoints.set(point, (this.#killPoints.get(point) ?? 0) + 1);
  }

  /** Where a failure happened, so it can be replayed. */
  get where(): string {
    return `[fault suite seed ${SUITE_SEED}, area ${this.name}, after ${this.kills} kills; ` +
      `replay: VAT_FAULT_SEED=${SUITE_SEED} VAT_FAULT_AREAS=${this.name} ` +
      `deno test -A tests/fault_suite_test.ts]`;
  }

  /** Throws `message` with the seed. */
  fail(message: string): never {
    throw new Error(`${message}\n${this.where}`);
  }

  /** Fails with `message` unless `condition`; counts invariant `name` when it holds. */
  check(condition: boolean, name: string, message: string): void {
    if (!condition) this.fail(`${name}: ${message}`);
    this.checked(name);
  }

  /** Starts `vat args...` (its output collected), killed at the end of the area if still running. */
  spawn(args: string[], options: { env?: Record<string, string> } = {}): VatChild {
    const child = new VatChild(this, args, options.env);
    this.#children.add(child);
    child.exited.then(() => this.#children.delete(child));
    return child;
  }

  /** Starts `vat args...` and waits for `ready` to appear in its output. */
  async start(
    args: string[],
    ready: RegExp,
    options: { env?: Record<string, string>; timeoutMs?: number } = {},
  ): Promise<VatChild> {
    const started = performance.now();
    const child = this.spawn(args, options);
    await child.waitFor(ready, options.timeoutMs);
    _trace(started, `ready: vat ${args.join(" ")}`);
    return child;
  }

  /**
   * SIGKILLs `child` after `delayMs` (from now). True, and counted, when it was
   * still running then and died of the kill; false when it had already exited.
   */
  async killAfter(child: VatChild, delayMs: number): Promise<boolean> {
    await Promise.race([child.exited, new Promise((r) => setTimeout(r, delayMs))]);
    return await this.kill(child);
  }

  /** SIGKILLs `child` now; true (and counted) when the kill is what ended it. */
  async kill(child: VatChild): Promise<boolean> {
    if (!child.hasExited) {
      try {
        child.process.kill("SIGKILL");
      } catch { /* exited in between */ }
    }
    const status = await child.exited;
    if (status.signal === "SIGKILL") {
      this.kills++;
      return true;
    }
    this.missed++;
    return false;
  }

  /** Runs `vat args...` to its end. */
  async run(
    args: string[],
    options: { env?: Record<string, string>; stdin?: Uint8Array } = {},
  ): Promise<VatResult> {
    const started = performance.now();
    const out = await new Deno.Command(Deno.execPath(), {
      args: [...VAT_DENO_ARGS, ...args],
      env: options.env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    _trace(started, `vat ${args.join(" ")}`);
    return {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
  }

  /** Runs `vat args...` and fails (with the seed) unless it exits 0. */
  async ok(args: string[], options: { env?: Record<string, string> } = {}): Promise<VatResult> {
    const result = await this.run(args, options);
    if (result.code !== 0) {
      this.fail(`vat ${args.join(" ")} exited ${result.code}:\n${result.stderr}${result.stdout}`);
    }
    return result;
  }

  /** Runs a program and fails (with the seed) unless it exits 0; its stdout. */
  async tool(program: string, args: string[]): Promise<string> {
    const out = await new Deno.Command(program, { args, stdout: "piped", stderr: "piped" })
      .output();
    const stdout = new TextDecoder().decode(out.stdout);
    if (out.code !== 0) {
      this.fail(
        `${program} ${args.join(" ")} exited ${out.code}:\n${
          new TextDecoder().decode(out.stderr)
        }${stdout}`,
      );
    }
    return stdout;
  }

  /** Kills every child still running (the end of the area, or a failure). */
  async cleanUp(): Promise<void> {
    for (const child of [...this.#children]) {
      try {
        child.process.kill("SIGKILL");
      } catch { /* gone */ }
      await child.exited;
    }
  }

  /** The area's summary line. */
  summary(seconds: number): string {
    const checks = [...this.#invariants].map(([name, n]) => `${name} x${n}`).join(", ");
    const points = [...this.#killPoints].map(([name, n]) => `${name} x${n}`).join(", ");
    return `fault suite: ${this.name}: ${this.kills} kills` +
      (points ? ` (${points})` : "") +
      (this.missed ? ` (+${this.missed} that came after the process ended)` : "") +
      `, invariants checked: ${checks || "none"}, seed ${SUITE_SEED}, ${seconds.toFixed(1)} s`;
  }

  /** The area's result, for the total. */
  result(seconds: number): AreaResult {
    return {
      area: this.name,
      kills: this.kills,
      missed: this.missed,
      invariants: new Map(this.#invariants),
      seconds,
    };
  }
}

/**
 * Runs area `name` in a fresh scratch directory: its children are killed and the
 * directory removed whatever happens; any failure carries the seed; on success the
 * summary line is printed and recorded.
 */
export async function runArea(name: string, fn: (area: FaultArea) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: `vat-fault-${name.replace(/\W+/g, "-")}-` });
  const area = new FaultArea(name, dir);
  const started = performance.now();
  try {
    await fn(area);
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    if (message.includes("[fault suite seed")) throw err;
    throw new Error(`${message}\n${area.where}`, { cause: err });
  } finally {
    await area.cleanUp();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(area.summary(seconds));
  AREA_RESULTS.push(area.result(seconds));
}

const _TRACE = Deno.env.get("VAT_FAULT_TRACE") === "1";

/** With VAT_FAULT_TRACE=1, prints how long each step took (to tune the suite's time). */
function _trace(startedMs: number, what: string): void {
  if (_TRACE) console.log(`  ${(performance.now() - startedMs).toFixed(0).padStart(6)} ms ${what}`);
}

/** `deno` arguments that run `vat` quickly: no download, no type check, no chatter. */
export const VAT_DENO_ARGS = ["run", "-A", "--quiet", "--cached-only", "--no-check", VAT_MAIN];

/** A `vat` child process whose stdout and stderr are collected. */
export class VatChild {
  readonly process: Deno.ChildProcess;
  readonly exited: Promise<Deno.CommandStatus>;
  readonly startedMs = performance.now();
  readonly #collected: Promise<unknown>;
  /** When it exited (performance.now()), or NaN while it runs. */
  endedMs = NaN;
  #text = "";
  #stdout = "";
  #hasExited = false;
  readonly #area: FaultArea;
  readonly #args: string[];

  constructor(area: FaultArea, args: string[], env?: Record<string, string>) {
    this.#area = area;
    this.#args = args;
    this.process = new Deno.Command(Deno.execPath(), {
      args: [...VAT_DENO_ARGS, ...args],
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const collect = async (stream: ReadableStream<Uint8Array>, isStdout: boolean) => {
      const decoder = new TextDecoder();
      for await (const piece of stream) {
        const text = decoder.decode(piece, { stream: true });
        this.#text += text;
        if (isStdout) this.#stdout += text;
      }
    };
    this.#collected = Promise.all([
      collect(this.process.stdout, true),
      collect(this.process.stderr, false),
    ]);
    this.exited = this.process.status.then(async (status) => {
      this.#hasExited = true;
      this.endedMs = performance.now();
      await this.#collected.catch(() => {});
      return status;
    });
  }

  get hasExited(): boolean {
    return this.#hasExited;
  }

  get pid(): number {
    return this.process.pid;
  }

  /** Everything it printed so far. */
  output(): string {
    return this.#text;
  }

  /** What it printed on standard output so far. */
  stdout(): string {
    return this.#stdout;
  }

  /** Waits until `pattern` is in its output; fails if it exits or takes too long first. */
  async waitFor(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const m = pattern.exec(this.#text);
      if (m) return m;
      if (this.#hasExited || performance.now() > deadline) {
        this.#area.fail(
          `vat ${this.#args.join(" ")} ${
            this.#hasExited ? "exited" : "timed out"
          } before printing ${pattern}:\n${this.#text}`,
        );
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** SIGTERM, then wait (SIGKILL after `graceMs`). */
  async stop(graceMs = 10_000): Promise<Deno.CommandStatus> {
    if (!this.#hasExited) {
      try {
        this.process.kill("SIGTERM");
      } catch { /* gone */ }
    }
    const timer = setTimeout(() => {
      try {
        this.process.kill("SIGKILL");
      } catch { /* gone */ }
    }, graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * How long a kind of run takes, learnt from the runs that ended on their own, so that
 * kills land inside the run rather than after it (the median of the last few).
 */
export class RunLength {
  readonly #samples: number[] = [];

  constructor(initialMs: number) {
    this.#samples.push(initialMs);
  }

  /** A run that ended by itself after `ms`. */
  observe(ms: number): void {
    this.#samples.push(ms);
    if (this.#samples.length > 7) this.#samples.shift();
  }

  /** A child that was meant to be killed but ended first (a `killAfter` that returned false). */
  observeChild(child: VatChild): void {
    if (child.process && !Number.isNaN(child.endedMs)) {
      this.observe(child.endedMs - child.startedMs);
    }
  }

  get typicalMs(): number {
    const sorted = [...this.#samples].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  }
}

/** Whether two files hold the same bytes; the first differing offset otherwise. */
export async function firstDifference(a: string, b: string): Promise<number | null> {
  const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return i;
  return x.length === y.length ? null : n;
}

/** PIDs of QEMU processes whose command line mentions `text` (pgrep -f). */
export async function qemuPidsMentioning(text: string): Promise<number[]> {
  const out = await new Deno.Command("pgrep", {
    args: ["-f", `qemu-system.*${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter(Boolean).map(Number);
}
