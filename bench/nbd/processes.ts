/**
 * Child processes for the NBD benchmark: one-shot commands with their output, and
 * servers that are waited for until ready and always stopped, by their own pid.
 *
 * @module
 */

/** The output of a command that succeeded. */
export interface CommandResult {
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

/** Runs `cmd` to completion; throws with its output if it fails. */
export async function runCommand(
  cmd: string,
  args: string[],
  options: { env?: Record<string, string> } = {},
): Promise<CommandResult> {
  const started = performance.now();
  const out = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: options.env,
  }).output();
  const elapsedMs = performance.now() - started;
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")} failed with exit code ${out.code}\n${stdout}${stderr}`,
    );
  }
  return { stdout, stderr, elapsedMs };
}

/** A server process started by `startServer()`. */
export interface ServerProcess {
  readonly name: string;
  readonly pid: number;
  /** Milliseconds from spawn until it was ready. */
  readonly startupMs: number;
  /** What it printed so far (both streams, the last 64 KiB). */
  output(): string;
  /** Its resident set now and at its peak (`VmHWM`), or null once it has exited. */
  memory(): Promise<ProcessMemory | null>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

/** A process's resident set, in bytes. */
export interface ProcessMemory {
  rssBytes: number;
  peakRssBytes: number;
}

/** When a server counts as ready. */
export type Readiness =
  | { line: RegExp }
  | { unixSocket: string };

const _OUTPUT_KEEP_CHARS = 64 * 1024;
const _POLL_MS = 20;

/** Every server started and not yet stopped, so a failing run can stop them all. */
const _running = new Set<ServerProcess>();

/**
 * Starts a server and resolves once it is ready: it printed a line matching
 * `ready.line`, or a connection to `ready.unixSocket` succeeds. Throws (after
 * stopping it) if it exits first or is not ready within `timeoutMs`.
 */
export async function startServer(
  name: string,
  cmd: string,
  args: string[],
  ready: Readiness,
  timeoutMs = 60_000,
): Promise<ServerProcess> {
  const started = performance.now();
  const child = new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  let lineSeen: () => void = () => {};
  const sawLine = new Promise<void>((resolve) => lineSeen = resolve);
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const bytes of stream) {
      output = (output + decoder.decode(bytes, { stream: true })).slice(-_OUTPUT_KEEP_CHARS);
      if ("line" in ready && ready.line.test(output)) lineSeen();
    }
  };
  const collecting = Promise.all([collect(child.stdout), collect(child.stderr)]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });

  const server: ServerProcess = {
    name,
    pid: child.pid,
    startupMs: 0,
    output: () => output,
    async memory() {
      if (exited) return null;
      try {
        const text = await Deno.readTextFile(`/proc/${child.pid}/status`);
        const kib = (field: string) =>
          Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1]);
        const rssBytes = kib("VmRSS") * 1024;
        const peakRssBytes = kib("VmHWM") * 1024;
        return Number.isFinite(rssBytes + peakRssBytes) ? { rssBytes, peakRssBytes } : null;
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) return null;
        throw err;
      }
    },
    async stop(graceMs = 5000) {
      _running.delete(server);
      if (!exited) {
        _signal(child, "SIGTERM");
        const timer = setTimeout(() => _signal(child, "SIGKILL"), graceMs);
        await status;
        clearTimeout(timer);
      }
      await collecting.catch(() => {});
    },
  };
  _running.add(server);

  const deadline = started + timeoutMs;
  const becameReady = "line" in ready ? sawLine : _waitForSocket(ready.unixSocket, deadline);
  const outcome = await Promise.race([
    becameReady.then(() => "ready" as const, () => "timeout" as const),
    status.then(() => "exited" as const),
    new Promise<"timeout">((resolve) => {
      const timer = setTimeout(() => resolve("timeout"), timeoutMs);
      Deno.unrefTimer(timer);
    }),
  ]);
  if (outcome !== "ready") {
    await server.stop();
    throw new Error(
      `${name} ${outcome === "exited" ? "exited" : "was not ready"} before serving ` +
        `(${cmd} ${args.join(" ")}):\n${output}`,
    );
  }
  (server as { startupMs: number }).startupMs = performance.now() - started;
  return server;
}

/** nbdkit in the foreground with `plugin` (e.g. `["file", PATH]`), serving on Unix socket `socket`. */
export function startNbdkit(socket: string, plugin: string[]): Promise<ServerProcess> {
  return startServer(
    "nbdkit",
    "nbdkit",
    ["--foreground", "--exit-with-parent", "-U", socket, ...plugin],
    { unixSocket: socket },
  );
}

/** Stops every server still running (for cleanup after a failure). */
export async function stopAllServers(): Promise<void> {
  await Promise.allSettled([..._running].map((s) => s.stop(2000)));
}

async function _waitForSocket(path: string, deadline: number): Promise<void> {
  while (performance.now() < deadline) {
    try {
      const conn = await Deno.connect({ transport: "unix", path });
      conn.close();
      return;
    } catch (err) {
      if (
        !(err instanceof Deno.errors.NotFound) && !(err instanceof Deno.errors.ConnectionRefused)
      ) {
        throw err;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, _POLL_MS));
  }
  throw new Error(`${path} did not accept connections in time`);
}

function _signal(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch (err) {
    // It exited between our check and the kill.
    if (!(err instanceof TypeError)) throw err;
  }
}
