/**
 * The KDF benchmark: what one login costs with each memory-hard KDF vat could use to
 * wrap a user's key in a key slot (docs/USERS.md, "Choosing the KDF"): node:crypto's
 * scrypt (OpenSSL, native) at several work factors, and Argon2id from the npm package
 * hash-wasm (WebAssembly), at parameters near half a second here. It prints, for each,
 * the median time of one derivation (a login costs one) and the memory it fills, so
 * the choice can be read off: the most memory an attacker must fill per guess for the
 * time a user waits.
 *
 * Run: `deno run -A bench/kdf.ts [--reps N]`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { scryptSync } from "node:crypto";
import { argon2id } from "hash-wasm";

const { values } = parseArgs({ args: Deno.args, options: { reps: { type: "string" } } });
const reps = Number(values.reps ?? 5);
const salt = new Uint8Array(16).fill(7);

interface Case {
  name: string;
  memoryMiB: number;
  run(): Promise<unknown> | unknown;
}

const cases: Case[] = [];
for (const logN of [15, 16, 17]) {
  const N = 2 ** logN;
  cases.push({
    name: `scrypt N=2^${logN} r=8 p=1 (node:crypto)`,
    memoryMiB: (128 * 8 * N) / 2 ** 20,
    run: () => scryptSync("correct horse", salt, 64, { N, r: 8, p: 1, maxmem: 2 ** 31 }),
  });
}
for (const [memoryMiB, iterations] of [[64, 3], [128, 2], [256, 1]]) {
  cases.push({
    name: `argon2id m=${memoryMiB}MiB t=${iterations} p=1 (hash-wasm)`,
    memoryMiB,
    run: () =>
      argon2id({
        password: "correct horse",
        salt,
        parallelism: 1,
        iterations,
        memorySize: memoryMiB * 1024,
        hashLength: 64,
        outputType: "binary",
      }),
  });
}

console.log(`one derivation (one login), median of ${reps}:`);
console.log("| KDF | memory | time per login | MiB filled per second |");
console.log("| --- | ---: | ---: | ---: |");
for (const c of cases) {
  await c.run(); // warm up (WebAssembly compile, allocator)
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await c.run();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const ms = times[Math.floor(times.length / 2)];
  console.log(
    `| ${c.name} | ${c.memoryMiB} MiB | ${ms.toFixed(0)} ms | ${
      (c.memoryMiB / (ms / 1000)).toFixed(0)
    } |`,
  );
}
