/**
 * Long-running `vat` processes for tests: started, waited for, and always stopped.
 *
 * @module
 */

import { VAT_MAIN } from "./vat_cli.ts";

/** A running child whose output (stdout and stderr) is collected. */
export interface CollectedProcess {
  child: Deno.ChildProcess;
  /** Whether it has exited. */
  readonly exited: boolean;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM (or the given signal), then wait for it to exit. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/** A running `vat` child whose output is collected. */
export type VatProcess = CollectedProcess;

/** Spawns `command args...` with its output collected; it is stopped by `stop()`. */
export function spawnCollected(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; clearEnv?: boolean } = {},
): CollectedProcess {
  const child = new Deno.Command(command, {
    args,
    env: options.env,
    clearEnv: options.clearEnv,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const piece of stream) text += decoder.decode(piece, { stream: true });
  };
  const collecting = Promise.all([collect(child.stdout), collect(child.stderr)]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  return {
    child,
    get exited() {
      return exited;
    },
    output: () => text,
    async stop(signal: Deno.Signal = "SIGTERM") {
      if (!exited) {
        try {
          child.kill(signal);
        } catch { /* already gone */ }
      }
      const s = await status;
      await collecting;
      return s;
    },
  };
}

/** Options of `startVat`. */
export interface StartVatOptions {
  /** Environment changes; `undefined` unsets a variable. */
  env?: Record<string, string | undefined>;
  /** How long it may take to get ready (default 20 s). */
  timeoutMs?: number;
}

/** Starts `vat args...` and resolves once `ready(output)` is true. */
export async function startVat(
  args: string[],
  ready: (output: string) => boolean,
  options: StartVatOptions = {},
): Promise<VatProcess> {
  const env = { ...Deno.env.toObject(), ...options.env };
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[name];
  }
  const proc = spawnCollected(Deno.execPath(), ["run", "-A", "--quiet", VAT_MAIN, ...args], {
    clearEnv: true,
    env: env as Record<string, string>,
  });
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  while (!ready(proc.output())) {
    if (proc.exited || Date.now() > deadline) {
      await proc.stop("SIGKILL");
      throw new Error(`vat ${args.join(" ")} did not get ready:\n${proc.output()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return proc;
}

/** Runs a program and returns its exit code and output. */
export async function run(
  program: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(program, { args, stdout: "piped", stderr: "piped" }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Runs a program and throws with its output unless it exits 0. */
export async function runOk(program: string, args: string[]): Promise<string> {
  const result = await run(program, args);
  if (result.code !== 0) {
    throw new Error(
      `${program} ${args.join(" ")} exited ${result.code}:\n${result.stderr}${result.stdout}`,
    );
  }
  return result.stdout;
}
