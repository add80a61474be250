/**
 * The shape every benchmark exports its results in, so that `deno task bench all`
 * (bench/run.ts) can gather them into one machine-readable file and regenerate the
 * README's tables from it: each bench writes `bench/out/NAME.result.json`.
 *
 * @module
 */

const _OUT_DIR = new URL("./out/", import.meta.url).pathname;
const _ROOT = new URL("../", import.meta.url).pathname;

/** One README table: its Markdown, and the line that states how it was measured. */
export interface BenchTable {
  /** Which README figure this is (e.g. "Publish and update: update bytes"). */
  title: string;
  /** One line: how it was measured, and what it leaves out. */
  method: string;
  /** A Markdown table (header, separator, rows). */
  markdown: string;
  /** Lines printed under the table (findings, unflattering ones included). */
  notes?: string[];
}

/** A bench's results. */
export interface BenchResult {
  bench: string;
  /** The command that produced them. */
  command: string;
  /** The commit of the tree that ran (with "+changes" when it had uncommitted ones). */
  commit?: string;
  startedAt: string;
  finishedAt: string;
  /** A short mode (--quick, fewer rounds): its figures are not README figures. */
  short: boolean;
  /** Named figures: value, unit, and the samples behind a median. */
  figures: Record<string, BenchFigure>;
  tables: BenchTable[];
}

/** One figure: the median of `samples` when there are several. */
export interface BenchFigure {
  value: number;
  unit: string;
  samples?: number[];
}

/** A figure from samples: their median, with the samples kept for the range. */
export function figureOf(samples: number[], unit: string): BenchFigure {
  return { value: median(samples), unit, samples };
}

/** The median of `xs` (NaN for none). */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** "5.3 (5.1-5.9)": the median and, for several samples, their range. */
export function medianRange(xs: number[], digits = 1): string {
  const m = median(xs).toFixed(digits);
  if (xs.length < 2) return m;
  return `${m} (${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)})`;
}

/** A Markdown table, columns padded like `deno fmt` pads them. */
export function markdownTable(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0].map((_, c) => Math.max(3, ...cells.map((r) => (r[c] ?? "").length)));
  const line = (r: string[]) => `| ${r.map((x, c) => x.padEnd(widths[c])).join(" | ")} |`;
  return [
    line(cells[0]),
    `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`,
    ...cells.slice(1).map(line),
  ].join("\n");
}

/** Writes `result` to bench/out/NAME.result.json; returns the path. */
export async function writeBenchResult(result: BenchResult): Promise<string> {
  await Deno.mkdir(_OUT_DIR, { recursive: true });
  const path = `${_OUT_DIR}${result.bench}.result.json`;
  const withCommit = { ...result, commit: result.commit ?? await _commit() };
  await Deno.writeTextFile(path, JSON.stringify(withCommit, null, 2) + "\n");
  return path;
}

/** The checkout's commit, "+changes" when its tracked files differ from it. */
async function _commit(): Promise<string> {
  const git = async (...args: string[]) => {
    const out = await new Deno.Command("git", { args, cwd: _ROOT, stdout: "piped", stderr: "null" })
      .output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
  };
  const head = await git("rev-parse", "--short", "HEAD");
  if (!head) return "unknown";
  return (await git("status", "--porcelain", "--untracked-files=no")) ? `${head}+changes` : head;
}

/** The path `writeBenchResult` writes for `bench`. */
export function resultPath(bench: string): string {
  return `${_OUT_DIR}${bench}.result.json`;
}

/** The Markdown of every table of `results`, each under its title with its method line. */
export function tablesMarkdown(results: BenchResult[]): string {
  const out: string[] = [];
  for (const r of results) {
    for (const t of r.tables) {
      out.push(
        `**${t.title}** (\`${r.command}\`${r.commit ? ` at ${r.commit}` : ""}` +
          `${r.short ? ", SHORT RUN: not a README figure" : ""})`,
      );
      out.push("", `Method: ${t.method}`, "", t.markdown);
      if (t.notes?.length) out.push("", ...t.notes);
      out.push("");
    }
  }
  return out.join("\n");
}
