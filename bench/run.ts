/**
 * `deno task bench [NAME] [ARGS...]`: runs one benchmark of `bench/`, or lists them.
 * Benchmarks are not tests: they print figures and ratios against peer tools.
 */

const BENCHES: Record<string, string> = {
  publish: "publish speed and update bytes against casync, qemu-img, rsync and zstd",
  nbd: "NBD reads warm and cold against nbdkit, and memory",
  boot: "boot to ready: warm and cold over emulated links, against local QEMU and nbdkit curl",
  backup: "backup of an office-like write trace over 384 kbit/s: pending at idle, bytes, vs restic",
  prefetch: "boot to ready from an empty cache: no trace, trace replay, trace + prefetch",
  kdf: "one login's key-slot KDF: scrypt (node:crypto) against Argon2id (hash-wasm)",
  login: "a user's login time: online (directory on disk, vat serve) and offline",
};

const [name, ...args] = Deno.args;
if (!name || !(name in BENCHES)) {
  console.log("usage: deno task bench NAME [ARGS...]\n");
  for (const [n, what] of Object.entries(BENCHES)) console.log(`  ${n.padEnd(10)} ${what}`);
  Deno.exit(name ? 2 : 0);
}
const script = new URL(`./${name}.ts`, import.meta.url).pathname;
const result = await new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", script, ...args],
  stdout: "inherit",
  stderr: "inherit",
}).output();
Deno.exit(result.code);
