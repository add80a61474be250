/**
 * A V8 CPU profile of a running Deno process, taken over the inspector protocol (Deno
 * has no `--cpu-prof`): start the process with `--inspect=127.0.0.1:0`, pass the
 * address it prints to `startCpuProfile()`, and stop to get the profile and a summary
 * of where the main thread spent its time.
 *
 * @module
 */

/** A `.cpuprofile` (Chrome DevTools' format), as `Profiler.stop` returns it. */
export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** One function's share of the samples. */
export interface FunctionTime {
  name: string;
  /** Samples in the function itself, as a fraction of all samples. */
  self: number;
  /** Samples in the function or anything it called. */
  total: number;
}

/** A profile being taken. */
export interface CpuProfiler {
  /** Stops profiling and returns the profile. */
  stop(): Promise<CpuProfile>;
  close(): void;
}

/** The inspector's WebSocket address in a Deno process's stderr, if it printed one yet. */
export function inspectorUrl(output: string): string | undefined {
  return /Debugger listening on (ws:\/\/\S+)/.exec(output)?.[1];
}

/** Connects to the inspector at `wsUrl` and starts sampling every `intervalUs`. */
export async function startCpuProfile(wsUrl: string, intervalUs = 200): Promise<CpuProfiler> {
  const socket = new WebSocket(wsUrl);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error(`cannot reach the inspector at ${wsUrl}`));
  });
  let nextId = 1;
  const pending = new Map<number, (result: unknown) => void>();
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.id !== undefined) pending.get(message.id)?.(message.result ?? message.error);
  };
  const call = (method: string, params: object = {}) =>
    new Promise<unknown>((resolve) => {
      const id = nextId++;
      pending.set(id, resolve);
      socket.send(JSON.stringify({ id, method, params }));
    });
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: intervalUs });
  await call("Profiler.start");
  return {
    async stop() {
      const result = await call("Profiler.stop") as { profile: CpuProfile };
      return result.profile;
    },
    close: () => socket.close(),
  };
}

/** Self and total time per function (named by name and place), most self time first. */
export function summarize(profile: CpuProfile): FunctionTime[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const name = (id: number) => {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const file = url.replace(/^.*\/(vat|bench|ext:[^/]*)\//, "$1/");
    return url ? `${functionName || "(anonymous)"} ${file}:${lineNumber + 1}` : functionName;
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  for (const sample of profile.samples) {
    const leaf = name(sample);
    self.set(leaf, (self.get(leaf) ?? 0) + 1);
    const seen = new Set<string>();
    for (let id: number | undefined = sample; id !== undefined; id = parent.get(id)) {
      const n = name(id);
      if (seen.has(n)) continue; // recursion counts once
      seen.add(n);
      total.set(n, (total.get(n) ?? 0) + 1);
    }
  }
  const count = profile.samples.length || 1;
  return [...total.keys()]
    .map((n) => ({ name: n, self: (self.get(n) ?? 0) / count, total: total.get(n)! / count }))
    .sort((a, b) => b.self - a.self);
}
