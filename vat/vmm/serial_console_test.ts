import assert from "node:assert/strict";
import { VatError } from "../errors.ts";
import { SerialConsole } from "./serial_console.ts";

/** A fake chardev socket: `fn` gets the console and the guest's side of the connection. */
async function withConsole(
  fn: (console: SerialConsole, guest: Deno.Conn, typed: () => string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vat-console-" });
  const listener = Deno.listen({ transport: "unix", path: `${dir}/console.sock` });
  try {
    const accepted = listener.accept();
    const console = await SerialConsole.connect(`${dir}/console.sock`);
    const guest = await accepted;
    let typed = "";
    const reading = (async () => {
      try {
        for await (const piece of guest.readable.pipeThrough(new TextDecoderStream())) {
          typed += piece;
        }
      } catch {
        // Closed by the test.
      }
    })();
    try {
      await fn(console, guest, () => typed);
    } finally {
      console.close();
      await console.closed;
      try {
        guest.close();
      } catch {
        // Already closed by the test.
      }
      await reading;
    }
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const encode = (text: string) => new TextEncoder().encode(text);

Deno.test("SerialConsole.waitForLine() finds whole lines across pieces and \\r\\n", async () => {
  await withConsole(async (console, guest) => {
    const ready = console.waitForLine(/VAT-READY/, { timeoutMs: 5000 });
    await guest.write(encode("booting\r\nVAT-RE"));
    await new Promise((resolve) => setTimeout(resolve, 20));
    await guest.write(encode("ADY\r\n"));
    const line = await ready;
    assert.equal(line.text, "VAT-READY");
    assert.equal(line.end, console.position);
    // A line already received is found at once.
    assert.equal((await console.waitForLine(/boot(ing)/, { timeoutMs: 1 })).match[1], "ing");
    assert.equal(console.text(), "booting\nVAT-READY\n");
  });
});

Deno.test("SerialConsole.request() types a line and returns the reply after it", async () => {
  await withConsole(async (console, guest, typed) => {
    await guest.write(encode("VAT-REPLY count 1\n"));
    await console.waitForLine(/count 1/, { timeoutMs: 5000 });
    const reply = console.request("count", /VAT-REPLY count (\d+)/, 5000);
    while (!typed().includes("\n")) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(typed(), "count\n");
    await guest.write(encode("VAT-REPLY count 2\n"));
    assert.equal((await reply).match[1], "2", "the older reply is not taken");
  });
});

Deno.test("SerialConsole.waitForLine() times out, and fails when the console closes", async () => {
  await withConsole(async (console, guest) => {
    await guest.write(encode("last words\n"));
    await console.waitForLine(/last/, { timeoutMs: 5000 });
    const err = await console.waitForLine(/never/, { timeoutMs: 30 }).then(() => null, (e) => e);
    assert.ok(err instanceof VatError);
    assert.match(err.message, /no line matching \/never\/ within 30 ms/);
    assert.match(err.message, /last words/);
    const pending = console.waitForLine(/never/, { timeoutMs: 5000 });
    guest.close();
    await assert.rejects(pending, /the console closed before a line matched/);
    await assert.rejects(console.writeLine("x"), VatError);
  });
});
