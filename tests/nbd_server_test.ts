/**
 * The NBD server against real clients: qemu-io, qemu-img, nbdcopy and nbdinfo (Debian's
 * qemu-utils and libnbd-bin) talk to a `FileDevice` served on a Unix socket (and TCP),
 * and the file is checked byte for byte.
 */

import assert from "node:assert/strict";
import { FileDevice } from "../vat/disk/file_device.ts";
import { type NbdServer, serveNbd } from "../vat/nbd/nbd_server.ts";
import type { NbdExports } from "../vat/nbd/nbd_export.ts";

const MiB = 1024 * 1024;

/** Deterministic bytes that neither compress nor repeat within a disk. */
function randomBytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/** Writes a raw image of `sizeBytes` with random data in `ranges` and holes elsewhere. */
async function writeImage(
  path: string,
  sizeBytes: number,
  ranges: [number, number][],
): Promise<Uint8Array> {
  const image = new Uint8Array(sizeBytes);
  for (const [offset, length] of ranges) image.set(randomBytes(length, offset + 1), offset);
  using file = await Deno.open(path, { write: true, createNew: true });
  await file.truncate(sizeBytes);
  for (const [offset, length] of ranges) {
    await file.seek(offset, Deno.SeekMode.Start);
    await file.write(image.subarray(offset, offset + length));
  }
  return image;
}

interface RunResult {
  success: boolean;
  stdout: string;
  stderr: string;
}

/** Runs a client program to completion. */
async function run(command: string, args: string[]): Promise<RunResult> {
  const output = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder();
  return {
    success: output.success,
    stdout: text.decode(output.stdout),
    stderr: text.decode(output.stderr),
  };
}

/** Runs a client program and fails the test with its output unless it succeeds. */
async function runOk(command: string, args: string[]): Promise<string> {
  const result = await run(command, args);
  assert.ok(
    result.success,
    `${command} ${args.join(" ")} failed:\n${result.stdout}\n${result.stderr}`,
  );
  return result.stdout;
}

/** The NBD URI of export `name` on a Unix socket. */
function nbdUri(socketPath: string, name = ""): string {
  return `nbd+unix:///${name}?socket=${socketPath}`;
}

interface Served {
  dir: string;
  socketPath: string;
  server: NbdServer;
  /** What the server logged. */
  logged: string[];
}

/**
 * Runs `fn` against a server of the exports `makeExports` opens in a fresh temp dir;
 * closes the server and the devices and removes the dir afterwards, even on failure.
 */
async function withServer(
  makeExports: (dir: string) => Promise<Map<string, FileDevice | { device: FileDevice }>>,
  fn: (served: Served) => Promise<void>,
  options: { tcp?: boolean } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vat-nbd-test-" });
  const devices: FileDevice[] = [];
  let server: NbdServer | undefined;
  try {
    const exports = await makeExports(dir);
    for (const found of exports.values()) {
      devices.push(found instanceof FileDevice ? found : found.device);
    }
    const logged: string[] = [];
    const socketPath = `${dir}/nbd.sock`;
    server = serveNbd({
      exports: exports as NbdExports,
      socketPath,
      tcp: options.tcp ? { port: 0 } : undefined,
      log: (message) => logged.push(message),
    });
    await fn({ dir, socketPath, server, logged });
  } finally {
    await server?.close();
    for (const device of devices) await device.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** One export "" of a 32 MiB image with data and holes, returned as `image`. */
function oneImage(
  holder: { image?: Uint8Array },
  options: { readOnly?: boolean } = {},
) {
  return async (dir: string) => {
    holder.image = await writeImage(`${dir}/disk.raw`, 32 * MiB, [
      [0, 3 * MiB],
      [5 * MiB + 123, 1 * MiB],
      [31 * MiB, 1 * MiB],
    ]);
    return new Map([["", await FileDevice.open(`${dir}/disk.raw`, options)]]);
  };
}

Deno.test("serveNbd() serves a file that nbdcopy and qemu-img compare find identical", async () => {
  const holder: { image?: Uint8Array } = {};
  await withServer(oneImage(holder), async ({ dir, socketPath, logged }) => {
    await runOk("nbdcopy", [nbdUri(socketPath), `${dir}/copy.raw`]);
    assert.deepEqual(await Deno.readFile(`${dir}/copy.raw`), holder.image);
    const compared = await runOk("qemu-img", [
      "compare",
      "-f",
      "raw",
      "-F",
      "raw",
      `${dir}/disk.raw`,
      nbdUri(socketPath),
    ]);
    assert.match(compared, /Images are identical/);
    assert.deepEqual(logged, []);
  });
});

Deno.test("serveNbd() stores qemu-io writes at unaligned offsets and reads them back", async () => {
  const holder: { image?: Uint8Array } = {};
  await withServer(oneImage(holder), async ({ dir, socketPath }) => {
    await runOk("qemu-io", [
      "-f",
      "raw",
      "-c",
      "write -P 0xab 1000 5000",
      "-c",
      "write -P 0xcd 65535 3",
      "-c",
      "write -P 0xef 4194305 300000",
      "-c",
      "write -f -P 0x5a 33554431 1",
      nbdUri(socketPath),
    ]);
    const expected = holder.image!;
    expected.fill(0xab, 1000, 6000);
    expected.fill(0xcd, 65535, 65538);
    expected.fill(0xef, 4194305, 4494305);
    expected.fill(0x5a, 33554431);

    // A second connection sees the writes of the first.
    await runOk("qemu-io", [
      "-f",
      "raw",
      "-c",
      "read -P 0xab 1000 5000",
      "-c",
      "read -P 0xcd 65535 3",
      "-c",
      "read -P 0xef 4194305 300000",
      "-c",
      "read -P 0x5a 33554431 1",
      nbdUri(socketPath),
    ]);
    assert.deepEqual(await Deno.readFile(`${dir}/disk.raw`), expected);
  });
});

Deno.test("serveNbd() carries out flush, discard and write-zeroes from qemu-io", async () => {
  const holder: { image?: Uint8Array } = {};
  await withServer(oneImage(holder), async ({ dir, socketPath, logged }) => {
    const output = await runOk("qemu-io", [
      "-f",
      "raw",
      "-c",
      "write -P 0x11 0 1M",
      "-c",
      "flush",
      "-c",
      "discard 4096 65536",
      "-c",
      "read -P 0 4096 65536",
      "-c",
      "write -z 100000 3000",
      "-c",
      "read -P 0 100000 3000",
      "-c",
      "read -P 0x11 103000 1000",
      "-c",
      "discard 31M 1M",
      "-c",
      "read -P 0 31M 1M",
      nbdUri(socketPath),
    ]);
    assert.match(output, /discard 65536\/65536 bytes at offset 4096/);
    const expected = holder.image!;
    expected.fill(0x11, 0, MiB);
    expected.fill(0, 4096, 4096 + 65536);
    expected.fill(0, 100000, 103000);
    expected.fill(0, 31 * MiB);
    assert.deepEqual(await Deno.readFile(`${dir}/disk.raw`), expected);
    assert.deepEqual(logged, []);
  });
});

Deno.test("serveNbd() refuses writes to a read-only export", async () => {
  const holder: { image?: Uint8Array } = {};
  await withServer(oneImage(holder, { readOnly: true }), async ({ dir, socketPath }) => {
    const refused = await run("qemu-io", [
      "-f",
      "raw",
      "-c",
      "write -P 0xab 0 4096",
      nbdUri(socketPath),
    ]);
    assert.equal(refused.success, false);
    assert.match(refused.stderr, /read-only|Permission denied/i);
    await runOk("qemu-io", ["-r", "-f", "raw", "-c", "read -v 0 16", nbdUri(socketPath)]);
    assert.deepEqual(await Deno.readFile(`${dir}/disk.raw`), holder.image);
  });
});

Deno.test("serveNbd() lists its exports with descriptions and block size constraints", async () => {
  await withServer(
    async (dir) => {
      await writeImage(`${dir}/a.raw`, 4 * MiB, []);
      await writeImage(`${dir}/b.raw`, 8 * MiB, []);
      return new Map<string, FileDevice | { device: FileDevice; description: string }>([
        ["", await FileDevice.open(`${dir}/a.raw`)],
        ["user", {
          device: await FileDevice.open(`${dir}/b.raw`, {
            readOnly: true,
            preferredBlockBytes: 65536,
          }),
          description: "the user disk",
        }],
      ]);
    },
    async ({ socketPath }) => {
      const listing = JSON.parse(
        await runOk("nbdinfo", ["--json", "--list", nbdUri(socketPath)]),
      );
      const exports = listing.exports as Record<string, unknown>[];
      assert.deepEqual(exports.map((e) => e["export-name"]), ["", "user"]);
      const [first, user] = exports;
      assert.equal(first["export-size"], 4 * MiB);
      assert.equal(first["is_read_only"], false);
      assert.equal(first["can_flush"], true);
      assert.equal(first["can_fua"], true);
      assert.equal(first["can_trim"], true);
      assert.equal(first["can_zero"], true);
      assert.equal(first["can_multi_conn"], true);
      assert.equal(first["block_size_minimum"], 1);
      assert.equal(first["block_size_preferred"], 4096);
      assert.equal(first["block_size_maximum"], 32 * MiB);
      assert.equal(user["export-size"], 8 * MiB);
      assert.equal(user["description"], "the user disk");
      assert.equal(user["is_read_only"], true);
      assert.equal(user["can_trim"], false);
      assert.equal(user["block_size_preferred"], 65536);

      const one = await runOk("nbdinfo", [nbdUri(socketPath, "user")]);
      assert.match(one, /export-size: 8388608/);
      assert.match(one, /block_size_preferred: 65536/);
    },
  );
});

Deno.test("serveNbd() keeps several exports apart", async () => {
  await withServer(
    async (dir) => {
      await writeImage(`${dir}/a.raw`, 4 * MiB, []);
      await writeImage(`${dir}/b.raw`, 4 * MiB, []);
      return new Map([
        ["system", await FileDevice.open(`${dir}/a.raw`)],
        ["user", await FileDevice.open(`${dir}/b.raw`)],
      ]);
    },
    async ({ dir, socketPath }) => {
      await runOk("qemu-io", ["-f", "raw", "-c", "write -P 1 0 1M", nbdUri(socketPath, "system")]);
      await runOk("qemu-io", ["-f", "raw", "-c", "write -P 2 1M 1M", nbdUri(socketPath, "user")]);
      await runOk("qemu-io", [
        "-f",
        "raw",
        "-c",
        "read -P 0 1M 1M",
        "-c",
        "read -P 1 0 1M",
        nbdUri(socketPath, "system"),
      ]);
      const a = await Deno.readFile(`${dir}/a.raw`);
      const b = await Deno.readFile(`${dir}/b.raw`);
      assert.ok(a.subarray(0, MiB).every((x) => x === 1) && a.subarray(MiB).every((x) => x === 0));
      assert.ok(b.subarray(0, MiB).every((x) => x === 0));
      assert.ok(b.subarray(MiB, 2 * MiB).every((x) => x === 2));
      const missing = await run("qemu-io", ["-f", "raw", "-c", "read 0 1", nbdUri(socketPath)]);
      assert.equal(missing.success, false);
    },
  );
});

Deno.test("serveNbd() serves concurrent clients of one export", async () => {
  const holder: { image?: Uint8Array } = {};
  await withServer(oneImage(holder), async ({ dir, socketPath }) => {
    const clients = 6;
    await Promise.all(
      Array.from({ length: clients }, (_, i) =>
        runOk("qemu-io", [
          "-f",
          "raw",
          "-c",
          `aio_write -P ${i + 1} ${i * 3 * MiB + 17} ${2 * MiB}`,
          "-c",
          `aio_write -P ${i + 101} ${i * 3 * MiB + 17 + 2 * MiB} 4096`,
          "-c",
          "aio_flush",
          "-c",
          `read -P ${i + 1} ${i * 3 * MiB + 17} ${2 * MiB}`,
          nbdUri(socketPath),
        ])),
    );
    const expected = holder.image!;
    for (let i = 0; i < clients; i++) {
      expected.fill(i + 1, i * 3 * MiB + 17, i * 3 * MiB + 17 + 2 * MiB);
      expected.fill(i + 101, i * 3 * MiB + 17 + 2 * MiB, i * 3 * MiB + 17 + 2 * MiB + 4096);
    }
    // Copies made while other clients still read must see the same bytes.
    await Promise.all([
      runOk("nbdcopy", [nbdUri(socketPath), `${dir}/copy1.raw`]),
      runOk("nbdcopy", ["--connections=4", nbdUri(socketPath), `${dir}/copy2.raw`]),
      runOk("qemu-img", [
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        `${dir}/disk.raw`,
        nbdUri(socketPath),
      ]),
    ]);
    assert.deepEqual(await Deno.readFile(`${dir}/copy1.raw`), expected);
    assert.deepEqual(await Deno.readFile(`${dir}/copy2.raw`), expected);
  });
});

Deno.test("serveNbd() serves over TCP on loopback too", async () => {
  const holder: { image?: Uint8Array } = {};
  await withServer(oneImage(holder), async ({ dir, server }) => {
    const addr = server.tcpAddr!;
    assert.equal(addr.hostname, "127.0.0.1");
    const uri = `nbd://127.0.0.1:${addr.port}/`;
    await runOk("qemu-io", ["-f", "raw", "-c", "write -P 0x77 12345 678", uri]);
    await runOk("nbdcopy", [uri, `${dir}/copy.raw`]);
    const expected = holder.image!.fill(0x77, 12345, 12345 + 678);
    assert.deepEqual(await Deno.readFile(`${dir}/copy.raw`), expected);
  }, { tcp: true });
});

Deno.test("serveNbd() makes its socket private and close() removes it", async () => {
  const holder: { image?: Uint8Array } = {};
  await withServer(oneImage(holder), async ({ socketPath, server }) => {
    // Only the user who serves the disks may connect.
    assert.equal((await Deno.stat(socketPath)).mode! & 0o777, 0o600);
    await runOk("qemu-io", ["-f", "raw", "-c", "read 0 4096", nbdUri(socketPath)]);
    await server.close();
    await assert.rejects(Deno.stat(socketPath), Deno.errors.NotFound);
    const refused = await run("qemu-io", ["-f", "raw", "-c", "read 0 1", nbdUri(socketPath)]);
    assert.equal(refused.success, false);
  });
});
