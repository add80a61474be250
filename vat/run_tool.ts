/**
 * Runs an external program (qemu-img, ...) and turns its failure into a `VatError`
 * that says what vat was doing, what the program said, and what is missing.
 *
 * @module
 */

import { NotFoundError, PermanentError, UsageError } from "./errors.ts";
import packages from "../scripts/packages.json" with { type: "json" };

/** Which Debian package provides each external program vat runs (scripts/packages.json). */
export const TOOL_PACKAGES: Record<string, string> = Object.fromEntries(
  [packages.start, packages.test, packages.essential].flatMap((section) =>
    Object.entries(section as Record<string, string[]>).flatMap(([pkg, programs]) =>
      programs.map((program) => [program, pkg])
    )
  ),
);

/** Runs `tool args` and returns its standard output; throws a `VatError` on failure. */
export async function runTool(
  tool: string,
  args: string[],
  options: { what: string; stdin?: Uint8Array },
): Promise<string> {
  let output: Deno.CommandOutput;
  try {
    const child = new Deno.Command(tool, {
      args,
      stdin: options.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (options.stdin) {
      const writer = child.stdin.getWriter();
      await writer.write(options.stdin);
      await writer.close();
    }
    output = await child.output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      const pkg = TOOL_PACKAGES[tool] ?? tool;
      throw new NotFoundError(
        `${options.what} needs ${tool}, which is not installed (install it: apt-get install ${pkg})`,
        { cause: err },
      );
    }
    throw err;
  }
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr).trim();
    const message = `${options.what} failed: ${tool} says: ${stderr || `exit code ${output.code}`}`;
    if (/No space left/i.test(stderr)) throw new PermanentError(message);
    throw new UsageError(message);
  }
  return new TextDecoder().decode(output.stdout);
}
