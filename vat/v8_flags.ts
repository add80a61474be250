/**
 * The V8 flags vat runs with, everywhere it is launched: `npm start` (scripts/bootstrap.mjs),
 * `deno task start` (deno.json), the compiled binary (`deno task compile` bakes them in), a
 * bundle release's `launch` script, and the benchmarks' `vat` processes. Plain
 * `deno run -A main.ts` runs without them (fine for the short CLI verbs).
 *
 * `--max-semi-space-size=1` (MiB): a young generation of 1 MiB is collected about every
 * 1 MiB of JavaScript objects allocated. Every chunk a fill fetches leaves ~100 KiB of
 * buffers behind (the stored object, zstd's output), which the young collection frees;
 * with V8's default (a young generation that grows to 16 MiB and more) tens of MiB of
 * dead buffers waited for it, and a full read peaked 50 MiB higher (docs/CACHE.md,
 * "Memory").
 *
 * @module
 */

/** The flags, as Deno's `--v8-flags=` takes them (comma-separated). */
export const V8_FLAGS = "--max-semi-space-size=1";
