/**
 * The NBD server against a raw socket client that says exactly what a test needs,
 * malformed or not: the handshake's options and errors, requests the server must
 * refuse, clients that misbehave, device failures, and requests in flight.
 */

import assert from "node:assert/strict";
import type { BlockDevice } from "../vat/disk/block_device.ts";
import { checkRange } from "../vat/disk/block_device.ts";
import { PermanentError } from "../vat/errors.ts";
import { type NbdServer, serveNbd } from "../vat/nbd/nbd_server.ts";
import type { NbdExports } from "../vat/nbd/nbd_export.ts";
import {
  CMD_DISC,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  EINVAL,
  EIO,
  ENOSPC,
  EPERM,
  ESHUTDOWN,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_CAN_MULTI_CONN,
  FLAG_FIXED_NEWSTYLE,
  FLAG_HAS_FLAGS,
  FLAG_NO_ZEROES,
  FLAG_READ_ONLY,
  FLAG_SEND_FLUSH,
  FLAG_SEND_FUA,
  FLAG_SEND_TRIM,
  FLAG_SEND_WRITE_ZEROES,
  INFO_BLOCK_SIZE,
  INFO_DESCRIPTION,
  INFO_EXPORT,
  INFO_NAME,
  INIT_MAGIC,
  OPT_ABORT,
  OPT_EXPORT_NAME,
  OPT_GO,
  OPT_INFO,
  OPT_LIST,
  OPT_REPLY_MAGIC,
  OPT_STRUCTURED_REPLY,
  OPTS_MAGIC,
  REP_ACK,
  REP_ERR_INVALID,
  REP_ERR_TOO_BIG,
  REP_ERR_UNKNOWN,
  REP_ERR_UNSUP,
  REP_INFO,
  REP_SERVER,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
} from "../vat/nbd/nbd_protocol.ts";

const MiB = 1024 * 1024;
const MAX_REQUEST_BYTES = 32 * MiB;

// A device in memory, with hooks to delay or fail requests -------------------------

interface MemoryDevice extends BlockDevice {
  bytes: Uint8Array;
  /** Called before every read and write; may delay it or throw. */
  hook?: (op: string, offset: number, length: number) => Promise<void> | void;
}

function memoryDevice(
  sizeBytes: number,
  options: { readOnly?: boolean; fill?: (i: number) => number } = {},
): MemoryDevice {
  const fill = options.fill ?? ((i) => (i * 7) & 0xff);
  const bytes = Uint8Array.from({ length: sizeBytes }, (_, i) => fill(i));
  const device: MemoryDevice = {
    bytes,
    sizeBytes,
    readOnly: options.readOnly ?? false,
    preferredBlockBytes: 4096,
    async read(offset, into) {
      checkRange(sizeBytes, offset, into.length);
      await device.hook?.("read", offset, into.length);
      into.set(bytes.subarray(offset, offset + into.length));
    },
    async write(offset, data) {
      checkRange(sizeBytes, offset, data.length);
      await device.hook?.("write", offset, data.length);
      bytes.set(data, offset);
    },
    async flush() {
      await device.hook?.("flush", 0, 0);
    },
    async trim(offset, length) {
      checkRange(sizeBytes, offset, length);
      await device.hook?.("trim", offset, length);
      bytes.fill(0, offset, offset + length);
    },
    async writeZeroes(offset, length) {
      checkRange(sizeBytes, offset, length);
      await device.hook?.("writeZeroes", offset, length);
      bytes.fill(0, offset, offset + length);
    },
    close: () => Promise.resolve(),
  };
  return device;
}

// A raw client --------------------------------------------------------------------

interface OptionReply {
  option: number;
  type: number;
  data: Uint8Array;
}

interface SimpleReply {
  error: number;
  cookie: bigint;
  data: Uint8Array;
}

const encoder = new TextEncoder();

/** Speaks NBD byte by byte, so that tests can also speak it wrongly. */
class RawClient {
  readonly conn: Deno.UnixConn;
  #pending = new Uint8Array(0);

  private constructor(conn: Deno.UnixConn) {
    this.conn = conn;
  }

  /** Connects and reads the greeting; sends `clientFlags` unless null. */
  static async connect(
    socketPath: string,
    clientFlags: number | null = FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES,
  ): Promise<RawClient> {
    const client = new RawClient(await Deno.connect({ transport: "unix", path: socketPath }));
    const greeting = await client.read(18);
    const view = new DataView(greeting.buffer);
    assert.equal(view.getBigUint64(0), INIT_MAGIC);
    assert.equal(view.getBigUint64(8), OPTS_MAGIC);
    assert.equal(view.getUint16(16), FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
    if (clientFlags !== null) await client.send(u32(clientFlags));
    return client;
  }

  /** Connects and enters transmission on export `name` with `NBD_OPT_GO`. */
  static async open(socketPath: string, name = ""): Promise<RawClient> {
    const client = await RawClient.connect(socketPath);
    const replies = await client.go(name);
    assert.equal(replies.at(-1)!.type, REP_ACK, "NBD_OPT_GO failed");
    return client;
  }

  async send(...parts: Uint8Array[]): Promise<void> {
    for (const part of parts) {
      let done = 0;
      while (done < part.length) done += await this.conn.write(part.subarray(done));
    }
  }

  /** Reads exactly `length` bytes; throws if the server hangs up first. */
  async read(length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    let done = Math.min(length, this.#pending.length);
    out.set(this.#pending.subarray(0, done));
    this.#pending = this.#pending.subarray(done);
    while (done < length) {
      const n = await this.conn.read(out.subarray(done));
      if (n === null) throw new Error(`server hung up after ${done} of ${length} bytes`);
      done += n;
    }
    return out;
  }

  /** Whether the server closes the connection (without sending anything first). */
  async hungUp(): Promise<boolean> {
    const byte = new Uint8Array(1);
    try {
      return (await this.conn.read(byte)) === null;
    } catch (err) {
      if (err instanceof Deno.errors.ConnectionReset) return true;
      throw err;
    }
  }

  sendOption(option: number, data: Uint8Array = new Uint8Array(0)): Promise<void> {
    const header = new Uint8Array(16);
    const view = new DataView(header.buffer);
    view.setBigUint64(0, OPTS_MAGIC);
    view.setUint32(8, option);
    view.setUint32(12, data.length);
    return this.send(header, data);
  }

  async optionReply(): Promise<OptionReply> {
    const header = new DataView((await this.read(20)).buffer);
    assert.equal(header.getBigUint64(0), OPT_REPLY_MAGIC);
    return {
      option: header.getUint32(8),
      type: header.getUint32(12),
      data: await this.read(header.getUint32(16)),
    };
  }

  /** Sends `NBD_OPT_GO` (or `NBD_OPT_INFO`) and reads replies up to the final one. */
  async go(name: string, infoRequests: number[] = [], option = OPT_GO): Promise<OptionReply[]> {
    await this.sendOption(option, goData(name, infoRequests));
    const replies: OptionReply[] = [];
    while (true) {
      const reply = await this.optionReply();
      assert.equal(reply.option, option);
      replies.push(reply);
      if (reply.type !== REP_INFO) return replies;
    }
  }

  sendRequest(
    command: number,
    options: { flags?: number; cookie?: bigint; offset?: number; length?: number } = {},
    payload?: Uint8Array,
  ): Promise<void> {
    const header = new Uint8Array(28);
    const view = new DataView(header.buffer);
    view.setUint32(0, REQUEST_MAGIC);
    view.setUint16(4, options.flags ?? 0);
    view.setUint16(6, command);
    view.setBigUint64(8, options.cookie ?? 1n);
    view.setBigUint64(16, BigInt(options.offset ?? 0));
    view.setUint32(24, options.length ?? payload?.length ?? 0);
    return payload ? this.send(header, payload) : this.send(header);
  }

  /** Reads a simple reply; `dataLength` bytes follow it if it reports success. */
  async reply(dataLength = 0): Promise<SimpleReply> {
    const header = new DataView((await this.read(16)).buffer);
    assert.equal(header.getUint32(0), SIMPLE_REPLY_MAGIC);
    const error = header.getUint32(4);
    return {
      error,
      cookie: header.getBigUint64(8),
      data: error === 0 ? await this.read(dataLength) : new Uint8Array(0),
    };
  }

  /** Reads `length` bytes at `offset`; fails the test unless the server says yes. */
  async readAt(offset: number, length: number, cookie = 7n): Promise<Uint8Array> {
    await this.sendRequest(CMD_READ, { offset, length, cookie });
    const reply = await this.reply(length);
    assert.equal(reply.error, 0);
    assert.equal(reply.cookie, cookie);
    return reply.data;
  }

  close(): void {
    try {
      this.conn.close();
    } catch (err) {
      if (!(err instanceof Deno.errors.BadResource)) throw err;
    }
  }
}

function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value);
  return bytes;
}

/** The data of `NBD_OPT_GO` / `NBD_OPT_INFO`. */
function goData(name: string, infoRequests: number[]): Uint8Array {
  const nameBytes = encoder.encode(name);
  const data = new Uint8Array(4 + nameBytes.length + 2 + 2 * infoRequests.length);
  const view = new DataView(data.buffer);
  view.setUint32(0, nameBytes.length);
  data.set(nameBytes, 4);
  view.setUint16(4 + nameBytes.length, infoRequests.length);
  infoRequests.forEach((info, i) => view.setUint16(6 + nameBytes.length + 2 * i, info));
  return data;
}

// The server under test ---------------------------------------------------------

interface Served {
  socketPath: string;
  server: NbdServer;
  logged: string[];
}

/**
 * Serves `exports` on a socket in a temp dir while `fn` runs; closes the server and
 * removes the dir afterwards, even on failure.
 */
async function withServer(
  exports: NbdExports,
  fn: (served: Served) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vat-nbd-protocol-" });
  const socketPath = `${dir}/nbd.sock`;
  const logged: string[] = [];
  const server = serveNbd({ exports, socketPath, log: (message) => logged.push(message) });
  try {
    await fn({ socketPath, server, logged });
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs `fn` with a client connected to the default export of a fresh 1 MiB device. */
async function withClient(
  fn: (client: RawClient, device: MemoryDevice, served: Served) => Promise<void>,
  device = memoryDevice(MiB),
): Promise<void> {
  await withServer(new Map([["", device]]), async (served) => {
    const client = await RawClient.open(served.socketPath);
    try {
      await fn(client, device, served);
    } finally {
      client.close();
    }
  });
}

// Handshake -----------------------------------------------------------------------

Deno.test("serveNbd() answers NBD_OPT_GO with size, flags and block sizes", async () => {
  const device = memoryDevice(MiB);
  await withServer(
    new Map([["disk", { device, description: "a test disk" }]]),
    async ({ socketPath }) => {
      const client = await RawClient.connect(socketPath);
      try {
        const replies = await client.go("disk", [INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE]);
        assert.equal(replies.at(-1)!.type, REP_ACK);
        const infos = new Map(
          replies.slice(0, -1).map((r) => [new DataView(r.data.buffer).getUint16(0), r.data]),
        );
        const exportInfo = new DataView(infos.get(INFO_EXPORT)!.buffer);
        assert.equal(exportInfo.byteLength, 12);
        assert.equal(exportInfo.getBigUint64(2), BigInt(MiB));
        assert.equal(
          exportInfo.getUint16(10),
          FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_TRIM |
            FLAG_SEND_WRITE_ZEROES | FLAG_CAN_MULTI_CONN,
        );
        const blockSize = new DataView(infos.get(INFO_BLOCK_SIZE)!.buffer);
        assert.deepEqual(
          [blockSize.getUint32(2), blockSize.getUint32(6), blockSize.getUint32(10)],
          [1, 4096, MAX_REQUEST_BYTES],
        );
        const text = new TextDecoder();
        assert.equal(text.decode(infos.get(INFO_NAME)!.subarray(2)), "disk");
        assert.equal(text.decode(infos.get(INFO_DESCRIPTION)!.subarray(2)), "a test disk");
        assert.deepEqual(await client.readAt(1000, 10), device.bytes.subarray(1000, 1010));
      } finally {
        client.close();
      }
    },
  );
});

Deno.test("serveNbd() answers NBD_OPT_GO for a missing export with NBD_REP_ERR_UNKNOWN", async () => {
  await withServer(new Map([["disk", memoryDevice(4096)]]), async ({ socketPath }) => {
    const client = await RawClient.connect(socketPath);
    try {
      const [reply] = await client.go("nope");
      assert.equal(reply.type, REP_ERR_UNKNOWN);
      assert.match(new TextDecoder().decode(reply.data), /"nope" does not exist/);
      // The client may try again on the same connection.
      assert.equal((await client.go("disk")).at(-1)!.type, REP_ACK);
      assert.equal((await client.readAt(0, 4096)).length, 4096);
    } finally {
      client.close();
    }
  });
});

Deno.test("serveNbd() answers unknown options with NBD_REP_ERR_UNSUP and carries on", async () => {
  await withServer(new Map([["", memoryDevice(4096)]]), async ({ socketPath }) => {
    const client = await RawClient.connect(socketPath);
    try {
      await client.sendOption(99, new Uint8Array(300).fill(1));
      assert.deepEqual((await client.optionReply()).type, REP_ERR_UNSUP);
      await client.sendOption(OPT_STRUCTURED_REPLY);
      assert.deepEqual((await client.optionReply()).type, REP_ERR_UNSUP);
      await client.sendOption(OPT_LIST, new Uint8Array(1));
      assert.deepEqual((await client.optionReply()).type, REP_ERR_INVALID);
      await client.sendOption(OPT_GO, new Uint8Array([0, 0, 0, 9, 0, 0]));
      assert.deepEqual((await client.optionReply()).type, REP_ERR_INVALID);
      assert.equal((await client.go("")).at(-1)!.type, REP_ACK);
    } finally {
      client.close();
    }
  });
});

Deno.test("serveNbd() skips an oversized option and answers NBD_REP_ERR_TOO_BIG", async () => {
  await withServer(new Map([["", memoryDevice(4096)]]), async ({ socketPath }) => {
    const client = await RawClient.connect(socketPath);
    try {
      await client.sendOption(OPT_INFO, new Uint8Array(MiB));
      assert.equal((await client.optionReply()).type, REP_ERR_TOO_BIG);
      assert.equal((await client.go("")).at(-1)!.type, REP_ACK);
    } finally {
      client.close();
    }
  });
});

Deno.test("serveNbd() lists exports for NBD_OPT_LIST and answers NBD_OPT_INFO", async () => {
  const exports = new Map<string, BlockDevice | { device: BlockDevice; description: string }>([
    ["", memoryDevice(4096)],
    ["user", { device: memoryDevice(8192, { readOnly: true }), description: "user disk" }],
  ]);
  await withServer(exports, async ({ socketPath }) => {
    const client = await RawClient.connect(socketPath);
    try {
      await client.sendOption(OPT_LIST);
      const servers: string[] = [];
      while (true) {
        const reply = await client.optionReply();
        if (reply.type !== REP_SERVER) {
          assert.equal(reply.type, REP_ACK);
          break;
        }
        const nameLength = new DataView(reply.data.buffer).getUint32(0);
        const text = new TextDecoder();
        servers.push(
          `${text.decode(reply.data.subarray(4, 4 + nameLength))}|${
            text.decode(reply.data.subarray(4 + nameLength))
          }`,
        );
      }
      assert.deepEqual(servers, ["|", "user|user disk"]);

      const info = await client.go("user", [], OPT_INFO);
      assert.equal(info.at(-1)!.type, REP_ACK);
      const exportInfo = new DataView(info[0].data.buffer);
      assert.equal(exportInfo.getBigUint64(2), 8192n);
      assert.equal(
        exportInfo.getUint16(10),
        FLAG_HAS_FLAGS | FLAG_READ_ONLY | FLAG_SEND_FLUSH | FLAG_CAN_MULTI_CONN,
      );
      // NBD_OPT_INFO does not enter transmission: options still work.
      await client.sendOption(OPT_ABORT);
      assert.equal((await client.optionReply()).type, REP_ACK);
      assert.equal(await client.hungUp(), true);
    } finally {
      client.close();
    }
  });
});

Deno.test("serveNbd() enters transmission on NBD_OPT_EXPORT_NAME", async () => {
  const device = memoryDevice(65536);
  await withServer(new Map([["disk", device]]), async ({ socketPath }) => {
    // Without NBD_FLAG_C_NO_ZEROES the reply carries 124 zero bytes.
    const client = await RawClient.connect(socketPath, FLAG_C_FIXED_NEWSTYLE);
    try {
      await client.sendOption(OPT_EXPORT_NAME, encoder.encode("disk"));
      const reply = await client.read(10 + 124);
      const view = new DataView(reply.buffer);
      assert.equal(view.getBigUint64(0), 65536n);
      assert.equal(view.getUint16(8) & FLAG_HAS_FLAGS, FLAG_HAS_FLAGS);
      assert.ok(reply.subarray(10).every((b) => b === 0));
      assert.deepEqual(await client.readAt(100, 100), device.bytes.subarray(100, 200));
    } finally {
      client.close();
    }
  });
});

Deno.test("serveNbd() hangs up on NBD_OPT_EXPORT_NAME for a missing export", async () => {
  await withServer(new Map([["disk", memoryDevice(4096)]]), async ({ socketPath, logged }) => {
    const client = await RawClient.connect(socketPath);
    try {
      await client.sendOption(OPT_EXPORT_NAME, encoder.encode("nope"));
      assert.equal(await client.hungUp(), true);
    } finally {
      client.close();
    }
    assert.match(logged.join("\n"), /export "nope", which does not exist/);
  });
});

Deno.test("serveNbd() hangs up on clients with unknown flags or without fixed newstyle", async () => {
  await withServer(new Map([["", memoryDevice(4096)]]), async ({ socketPath, logged }) => {
    for (const flags of [0, FLAG_C_FIXED_NEWSTYLE | 1 << 5]) {
      const client = await RawClient.connect(socketPath, flags);
      try {
        assert.equal(await client.hungUp(), true);
      } finally {
        client.close();
      }
    }
    assert.equal(logged.length, 2);
  });
});

Deno.test("serveNbd() hangs up on a bad option magic", async () => {
  await withServer(new Map([["", memoryDevice(4096)]]), async ({ socketPath, logged }) => {
    const client = await RawClient.connect(socketPath);
    try {
      await client.send(new Uint8Array(16).fill(0x41));
      assert.equal(await client.hungUp(), true);
    } finally {
      client.close();
    }
    assert.match(logged.join("\n"), /bad option magic/);
  });
});

// Transmission: refusing what cannot be done ---------------------------------------

Deno.test("serveNbd() closes a connection that sends a bad request magic and serves the next client", async () => {
  await withClient(async (client, device, { socketPath, logged }) => {
    const bad = new Uint8Array(28).fill(0xee);
    await client.send(bad);
    assert.equal(await client.hungUp(), true);
    assert.match(logged.join("\n"), /bad request magic 0xeeeeeeee/);

    const next = await RawClient.open(socketPath);
    try {
      assert.deepEqual(await next.readAt(0, 4096), device.bytes.subarray(0, 4096));
    } finally {
      next.close();
    }
  });
});

Deno.test("serveNbd() answers an unknown command with EINVAL and keeps serving", async () => {
  await withClient(async (client, device) => {
    await client.sendRequest(42, { cookie: 5n, length: 512 });
    assert.deepEqual(await client.reply(), { error: EINVAL, cookie: 5n, data: new Uint8Array(0) });
    await client.sendRequest(CMD_READ, { flags: 1 << 9, length: 512, cookie: 6n });
    assert.equal((await client.reply()).error, EINVAL);
    assert.deepEqual(await client.readAt(0, 512), device.bytes.subarray(0, 512));
  });
});

Deno.test("serveNbd() answers reads beyond the end with EINVAL", async () => {
  await withClient(async (client, device) => {
    await client.sendRequest(CMD_READ, { offset: MiB - 512, length: 1024, cookie: 9n });
    // No data follows the error: the next reply starts right after the header.
    assert.deepEqual(await client.reply(), { error: EINVAL, cookie: 9n, data: new Uint8Array(0) });
    await client.sendRequest(CMD_READ, { offset: 2 ** 62, length: 1, cookie: 10n });
    assert.equal((await client.reply()).error, EINVAL);
    await client.sendRequest(CMD_TRIM, { offset: MiB, length: 1 });
    assert.equal((await client.reply()).error, EINVAL);
    assert.deepEqual(await client.readAt(MiB - 512, 512), device.bytes.subarray(MiB - 512));
  });
});

Deno.test("serveNbd() answers writes beyond the end with ENOSPC and changes nothing", async () => {
  await withClient(async (client, device) => {
    const before = device.bytes.slice();
    await client.sendRequest(CMD_WRITE, { offset: MiB - 100, cookie: 3n }, new Uint8Array(200));
    assert.deepEqual(await client.reply(), { error: ENOSPC, cookie: 3n, data: new Uint8Array(0) });
    await client.sendRequest(CMD_WRITE_ZEROES, { offset: MiB - 100, length: 101 });
    assert.equal((await client.reply()).error, ENOSPC);
    assert.deepEqual(device.bytes, before);
    assert.deepEqual(await client.readAt(MiB - 100, 100), before.subarray(MiB - 100));
  });
});

Deno.test("serveNbd() refuses requests over the maximum block size", async () => {
  await withClient(async (client, device, { logged }) => {
    await client.sendRequest(CMD_READ, { length: MAX_REQUEST_BYTES + 1, cookie: 1n });
    assert.equal((await client.reply()).error, EINVAL);

    // A write it can skip is refused and the connection stays usable.
    const before = device.bytes.slice();
    await client.sendRequest(CMD_WRITE, { cookie: 2n }, new Uint8Array(MAX_REQUEST_BYTES + 512));
    assert.deepEqual(await client.reply(), { error: EINVAL, cookie: 2n, data: new Uint8Array(0) });
    assert.deepEqual(device.bytes, before);
    assert.deepEqual(await client.readAt(0, 16), before.subarray(0, 16));

    // A payload too long to skip ends the connection.
    await client.sendRequest(CMD_WRITE, { length: 0xffffffff });
    assert.equal(await client.hungUp(), true);
    assert.match(logged.join("\n"), /4294967295-byte write, too long to skip/);
  });
});

Deno.test("serveNbd() answers writes to a read-only export with EPERM", async () => {
  await withClient(async (client, device) => {
    const before = device.bytes.slice();
    await client.sendRequest(CMD_WRITE, { offset: 0 }, new Uint8Array(512));
    assert.equal((await client.reply()).error, EPERM);
    await client.sendRequest(CMD_TRIM, { offset: 0, length: 512 });
    assert.equal((await client.reply()).error, EPERM);
    await client.sendRequest(CMD_WRITE_ZEROES, { offset: 0, length: 512 });
    assert.equal((await client.reply()).error, EPERM);
    await client.sendRequest(CMD_FLUSH);
    assert.equal((await client.reply()).error, 0);
    assert.deepEqual(device.bytes, before);
  }, memoryDevice(MiB, { readOnly: true }));
});

Deno.test("serveNbd() survives a client that hangs up in the middle of a write payload", async () => {
  await withClient(async (client, device, { socketPath }) => {
    const before = device.bytes.slice();
    await client.sendRequest(CMD_WRITE, { offset: 0, length: MiB / 2 });
    await client.send(new Uint8Array(1000).fill(0xff));
    client.close();

    const next = await RawClient.open(socketPath);
    try {
      assert.deepEqual(await next.readAt(0, 4096), before.subarray(0, 4096));
    } finally {
      next.close();
    }
    assert.deepEqual(device.bytes, before);
  });
});

Deno.test("serveNbd() survives a client that hangs up with requests in flight", async () => {
  await withClient(async (client, device, { socketPath, logged }) => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => release = resolve);
    device.hook = (op) => op === "read" ? gate : undefined;
    for (let i = 0; i < 10; i++) {
      await client.sendRequest(CMD_READ, { offset: i * 65536, length: 65536, cookie: BigInt(i) });
    }
    client.close();
    await new Promise((resolve) => setTimeout(resolve, 20));
    release();

    const next = await RawClient.open(socketPath);
    try {
      assert.deepEqual(await next.readAt(0, 65536), device.bytes.subarray(0, 65536));
    } finally {
      next.close();
    }
    assert.deepEqual(logged, []);
  });
});

// Transmission: doing what was asked ----------------------------------------------

Deno.test("serveNbd() writes, flushes, trims and zeroes on request", async () => {
  await withClient(async (client, device) => {
    const ops: string[] = [];
    device.hook = (op, offset, length) => void ops.push(`${op} ${offset} ${length}`);
    const data = new Uint8Array(5000).fill(0xab);
    await client.sendRequest(CMD_WRITE, { offset: 1000, cookie: 1n, flags: 1 }, data);
    assert.equal((await client.reply()).error, 0);
    await client.sendRequest(CMD_TRIM, { offset: 2000, length: 100, cookie: 2n });
    assert.equal((await client.reply()).error, 0);
    await client.sendRequest(CMD_WRITE_ZEROES, { offset: 3000, length: 10, flags: 2 });
    assert.equal((await client.reply()).error, 0);
    await client.sendRequest(CMD_FLUSH, { cookie: 4n });
    assert.deepEqual(await client.reply(), { error: 0, cookie: 4n, data: new Uint8Array(0) });
    // The FUA write was followed by a flush before its reply.
    assert.deepEqual(ops, [
      "write 1000 5000",
      "flush 0 0",
      "trim 2000 100",
      "writeZeroes 3000 10",
      "flush 0 0",
    ]);
    const expected = data.slice();
    expected.fill(0, 1000, 1100);
    expected.fill(0, 2000, 2010);
    assert.deepEqual(await client.readAt(1000, 5000), expected);
    await client.sendRequest(CMD_DISC);
    assert.equal(await client.hungUp(), true);
  });
});

Deno.test("serveNbd() answers device failures with EIO and ENOSPC, and logs them", async () => {
  await withClient(async (client, device, { logged }) => {
    device.hook = (op, offset) => {
      if (op === "read" && offset === 8192) throw new Error("bad sector");
      if (op === "write") throw new PermanentError("disk full: no room for the overlay");
    };
    await client.sendRequest(CMD_READ, { offset: 8192, length: 4096, cookie: 11n });
    assert.deepEqual(await client.reply(), { error: EIO, cookie: 11n, data: new Uint8Array(0) });
    await client.sendRequest(CMD_WRITE, { offset: 0, cookie: 12n }, new Uint8Array(4096));
    assert.equal((await client.reply()).error, ENOSPC);
    assert.deepEqual(await client.readAt(0, 4096), device.bytes.subarray(0, 4096));
    assert.equal(logged.length, 2);
    assert.match(logged[0], /export "": read of 4096 bytes at offset 8192 failed: bad sector/);
    assert.match(logged[1], /write of 4096 bytes at offset 0 failed: disk full/);
  });
});

Deno.test("serveNbd() runs pipelined requests concurrently and may answer out of order", async () => {
  await withClient(async (client, device) => {
    // Early offsets are slow: if the server waited for each request in turn, the
    // replies would come back in request order.
    device.hook = (op, offset) =>
      op === "read"
        ? new Promise((resolve) => setTimeout(resolve, 100 - offset / 4096))
        : undefined;
    const count = 64;
    for (let i = 0; i < count; i++) {
      await client.sendRequest(CMD_READ, { offset: i * 4096, length: 4096, cookie: BigInt(i) });
    }
    const order: number[] = [];
    for (let i = 0; i < count; i++) {
      const reply = await client.reply(4096);
      const n = Number(reply.cookie);
      assert.equal(reply.error, 0);
      assert.deepEqual(reply.data, device.bytes.subarray(n * 4096, (n + 1) * 4096));
      order.push(n);
    }
    assert.deepEqual([...order].sort((a, b) => a - b), [...Array(count).keys()]);
    assert.notDeepEqual(order, [...Array(count).keys()]);
  });
});

Deno.test("NbdServer.close() answers requests in flight, then hangs up", async () => {
  await withClient(async (client, device, { server }) => {
    let started!: () => void;
    const readStarted = new Promise<void>((resolve) => started = resolve);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => release = resolve);
    device.hook = (op) => {
      if (op !== "read") return;
      started();
      return gate;
    };
    await client.sendRequest(CMD_READ, { offset: 0, length: 4096, cookie: 1n });
    await readStarted;
    const closed = server.close();
    // A request that arrives while shutting down is refused, even as the one in
    // flight still runs.
    await client.sendRequest(CMD_READ, { offset: 0, length: 4096, cookie: 2n });
    assert.deepEqual(await client.reply(), {
      error: ESHUTDOWN,
      cookie: 2n,
      data: new Uint8Array(0),
    });
    release();
    const reply = await client.reply(4096);
    assert.equal(reply.cookie, 1n);
    assert.deepEqual(reply.data, device.bytes.subarray(0, 4096));
    assert.equal(await client.hungUp(), true);
    await closed;
  });
});
