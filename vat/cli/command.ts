/** One CLI verb: its help and what it does. */
export interface Command {
  /** The words that select it ("repo init"). */
  name: string;
  /** One line for `vat help`. */
  summary: string;
  /** The usage line(s) and flags, printed by `--help`. */
  usage: string;
  /** Runs it; returns the exit code. Throws `VatError`s for the user to read. */
  run(args: string[]): Promise<number>;
}
