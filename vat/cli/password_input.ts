/**
 * Reading a password for the CLI: the first line of `--password-file F`, or typed on
 * the terminal without echo. Never from an argument (any local user can read those).
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/** The first line of `path` (without its line end); refuses an empty one. */
export async function readPasswordFile(path: string, flag: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new UsageError(`${flag} ${path} cannot be read: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const line = text.split(/\r?\n/)[0];
  if (line === "") throw new UsageError(`${flag} ${path}: its first line is empty`);
  return line;
}

/** Asks on the terminal without echo; `UsageError` when standard input is no terminal. */
export async function promptPassword(question: string, flag: string): Promise<string> {
  if (!Deno.stdin.isTerminal()) {
    throw new UsageError(`no terminal to ask for the password on: give ${flag} FILE`);
  }
  await Deno.stderr.write(new TextEncoder().encode(question));
  Deno.stdin.setRaw(true);
  const bytes: number[] = [];
  try {
    const buffer = new Uint8Array(1);
    while (true) {
      const n = await Deno.stdin.read(buffer);
      if (n === null || buffer[0] === 13 || buffer[0] === 10) break;
      if (buffer[0] === 3) throw new UsageError("cancelled");
      if (buffer[0] === 127 || buffer[0] === 8) bytes.pop();
      else bytes.push(buffer[0]);
    }
  } finally {
    Deno.stdin.setRaw(false);
    await Deno.stderr.write(new TextEncoder().encode("\n"));
  }
  const password = new TextDecoder().decode(new Uint8Array(bytes));
  if (password === "") throw new UsageError("the password is empty");
  return password;
}

/** `--password-file`'s first line, or the terminal (asked twice when `confirm`). */
export async function readPassword(
  file: string | undefined,
  flag: string,
  question: string,
  confirm = false,
): Promise<string> {
  if (file !== undefined) return await readPasswordFile(file, flag);
  const password = await promptPassword(question, flag);
  if (confirm && (await promptPassword("again: ", flag)) !== password) {
    throw new UsageError("the two passwords differ; nothing was changed");
  }
  return password;
}
