import assert from "node:assert/strict";
import { ProtocolError } from "../errors.ts";
import { QmpClient, QmpClosedError, QmpCommandError, type QmpEvent } from "./qmp_client.ts";

/**
 * A fake QEMU monitor on a Unix socket: greets, then hands every request to
 * `answer`, which writes replies (and events) with `send`.
 */
async function withFakeQmp(
  answer: (request: Record<string, unknown>, send: (message: unknown) => Promise<void>) =>
    | void
    | Promise<void>,
  fn: (path: string, hangUp: () => void) => Promise<void>,
  greeting: unknown = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } } } },
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vat-qmp-" });
  const path = `${dir}/qmp.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const conns: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      const encoder = new TextEncoder();
      // QEMU ends lines with \r\n.
      const send = async (message: unknown) => {
        await conn.write(encoder.encode(JSON.stringify(message) + "\r\n"));
      };
      (async () => {
        try {
          await send(greeting);
          let buffered = "";
          for await (const piece of conn.readable.pipeThrough(new TextDecoderStream())) {
            buffered += piece;
            let newline;
            while ((newline = buffered.indexOf("\n")) >= 0) {
              const line = buffered.slice(0, newline);
              buffered = buffered.slice(newline + 1);
              await answer(JSON.parse(line), send);
            }
          }
        } catch {
          // The client or the test hung up.
        }
      })();
    }
  })();
  const hangUp = () => {
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  };
  try {
    await fn(path, hangUp);
  } finally {
    hangUp();
    listener.close();
    await serving.catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("QmpClient negotiates capabilities and matches answers to commands by id", async () => {
  const seen: string[] = [];
  const held: [Record<string, unknown>, (m: unknown) => Promise<void>][] = [];
  await withFakeQmp(async (request, send) => {
    seen.push(String(request.execute));
    if (request.execute === "qmp_capabilities") return send({ return: {}, id: request.id });
    held.push([request, send]);
    // Answer the two commands in reverse order: ids, not order, decide.
    if (held.length === 2) {
      for (const [r, s] of held.reverse()) {
        await s({ return: { echo: r.execute, args: r.arguments ?? null }, id: r.id });
      }
    }
  }, async (path) => {
    const qmp = await QmpClient.connect(path);
    assert.deepEqual(qmp.version, { major: 7, minor: 2, micro: 0 });
    const [a, b] = await Promise.all([
      qmp.execute("query-status"),
      qmp.execute("migrate", { uri: "exec:cat" }),
    ]);
    assert.deepEqual(a, { echo: "query-status", args: null });
    assert.deepEqual(b, { echo: "migrate", args: { uri: "exec:cat" } });
    assert.deepEqual(seen, ["qmp_capabilities", "query-status", "migrate"]);
    qmp.close();
    await qmp.closed;
  });
});

Deno.test("QmpClient.execute() rejects with QEMU's error text", async () => {
  await withFakeQmp(
    (request, send) =>
      request.execute === "qmp_capabilities" ? send({ return: {}, id: request.id }) : send({
        error: { class: "GenericError", desc: "No migration in progress" },
        id: request.id,
      }),
    async (path) => {
      const qmp = await QmpClient.connect(path);
      const err = await qmp.execute("migrate_cancel").then(() => undefined, (e) => e);
      assert.ok(err instanceof QmpCommandError);
      assert.equal(err.message, "QEMU refused migrate_cancel: No migration in progress");
      assert.equal(err.errorClass, "GenericError");
      qmp.close();
      await qmp.closed;
    },
  );
});

Deno.test("QmpClient delivers events to subscribers, and nextEvent() waits for one", async () => {
  await withFakeQmp(async (request, send) => {
    if (request.execute === "stop") {
      await send({ event: "STOP", data: {}, timestamp: { seconds: 2, microseconds: 500 } });
    }
    await send({ return: {}, id: request.id });
    if (request.execute === "system_powerdown") {
      await send({ event: "POWERDOWN", timestamp: { seconds: 3, microseconds: 0 } });
      await send({
        event: "SHUTDOWN",
        data: { guest: true, reason: "guest-shutdown" },
        timestamp: { seconds: 4, microseconds: 0 },
      });
    }
  }, async (path) => {
    const qmp = await QmpClient.connect(path);
    const events: QmpEvent[] = [];
    const unsubscribe = qmp.subscribe((event) => events.push(event));
    qmp.subscribe(() => {
      throw new Error("a failing listener is ignored");
    });
    await qmp.execute("stop");
    assert.deepEqual(events, [{ event: "STOP", data: {}, timeMs: 2000.5 }]);
    unsubscribe();
    const shutdown = qmp.nextEvent((e) => e.event === "SHUTDOWN", 5000);
    await qmp.execute("system_powerdown");
    assert.deepEqual((await shutdown).data, { guest: true, reason: "guest-shutdown" });
    assert.equal(events.length, 1, "no events after unsubscribing");
    qmp.close();
    await qmp.closed;
  });
});

Deno.test("QmpClient rejects commands in flight when QEMU goes away", async () => {
  await withFakeQmp((request, send) => {
    if (request.execute === "qmp_capabilities") return send({ return: {}, id: request.id });
    // Never answer anything else.
  }, async (path, hangUp) => {
    const qmp = await QmpClient.connect(path);
    const pending = qmp.execute("quit");
    const event = qmp.nextEvent(() => true, 10_000);
    hangUp();
    await assert.rejects(pending, QmpClosedError);
    await assert.rejects(event, QmpClosedError);
    await qmp.closed;
    await assert.rejects(qmp.execute("query-status"), QmpClosedError);
  });
});

Deno.test("QmpClient.execute() gives up after its time limit", async () => {
  await withFakeQmp((request, send) => {
    if (request.execute === "qmp_capabilities") return send({ return: {}, id: request.id });
  }, async (path) => {
    const qmp = await QmpClient.connect(path);
    await assert.rejects(
      qmp.execute("query-status", undefined, { timeoutMs: 50 }),
      /QEMU did not answer query-status within 50 ms/,
    );
    qmp.close();
    await qmp.closed;
  });
});

Deno.test("QmpClient.connect() refuses a peer that does not greet like QEMU", async () => {
  await withFakeQmp(() => {}, async (path) => {
    await assert.rejects(QmpClient.connect(path), ProtocolError);
  }, { hello: "not qmp" });
});
