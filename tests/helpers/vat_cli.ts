/**
 * Runs the real `vat` CLI (`deno run -A main.ts`) as a separate process, as a user
 * would, and captures what it prints.
 *
 * @module
 */

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** What a `vat` run printed and how it ended. */
export interface VatRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `vat args...` in `cwd` and waits for it. */
export async function runVat(
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<VatRun> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, ...args],
    cwd: options.cwd,
    env: options.env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
}

/** Runs `vat args...` and throws with its output unless it exits 0. */
export async function vatOk(
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<VatRun> {
  const run = await runVat(args, options);
  if (run.code !== 0) {
    throw new Error(`vat ${args.join(" ")} exited ${run.code}:\n${run.stderr}\n${run.stdout}`);
  }
  return run;
}

/** Starts `vat args...` without waiting, for tests that kill it. */
export function spawnVat(args: string[], options: { cwd?: string } = {}): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, ...args],
    cwd: options.cwd,
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

/** The path of `main.ts`, for tests that need it. */
export const VAT_MAIN = MAIN;
