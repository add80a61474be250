/**
 * The memory of a process under attack, for the tests of limits on untrusted input:
 * its peak resident set (VmHWM of /proc/PID/status), sampled while it runs.
 *
 * @module
 */

/** A watch on one process's peak resident memory. */
export interface MemoryWatch {
  /** The highest peak seen so far, in MiB. */
  peakMiB(): number;
  /** Stops sampling; returns the peak in MiB. */
  stop(): number;
}

/** Reads `/proc/PID/status` field `name` (in KiB), or null when the process is gone. */
export function procStatusKiB(pid: number, name: "VmRSS" | "VmHWM"): number | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    return null;
  }
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text);
  return m ? Number(m[1]) : null;
}

/** Samples `pid`'s peak resident memory every `everyMs` until stopped. */
export function watchMemory(pid: number, everyMs = 20): MemoryWatch {
  let peakKiB = 0;
  const sample = () => {
    const kib = procStatusKiB(pid, "VmHWM");
    if (kib !== null && kib > peakKiB) peakKiB = kib;
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    peakMiB: () => peakKiB / 1024,
    stop() {
      clearInterval(timer);
      sample();
      return peakKiB / 1024;
    },
  };
}
