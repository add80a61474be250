/**
 * The priority layer of the fetch path (docs/CACHE.md, "The fetch path"): strict
 * priorities for the VAT's traffic with its repositories, demand reads, then boot-trace
 * replay, then prefetch, then backup upload. Every level is bounded in how many
 * requests it keeps on the link, and every request that waits, waits here, where
 * `stats()` shows it. A demand read waits only for other demand reads (at most
 * `demandInFlight` run at once); the lower levels wait for the higher ones, so a demand
 * read that arrives while prefetch saturates the link queues behind at most
 * `backgroundInFlight` requests, never behind the prefetch's whole queue.
 *
 * @module
 */

/** Who asks: the guest (demand), trace replay, background prefetch, backup upload. */
export type FetchPriority = "demand" | "trace" | "prefetch" | "backup";

/** Options of `FetchScheduler`. */
export interface FetchSchedulerOptions {
  /** Demand requests in flight at once (default 32: fewer left a 100 Mbit/s, 20 ms link idle). */
  demandInFlight?: number;
  /** Trace-replay requests in flight at once (default 4). */
  traceInFlight?: number;
  /** Prefetch and backup requests in flight at once, together (default 2). */
  backgroundInFlight?: number;
}

/** What runs and waits now, per priority. */
export interface SchedulerStats {
  inFlight: Record<FetchPriority, number>;
  queued: Record<FetchPriority, number>;
}

/** The levels, highest first. */
export const FETCH_PRIORITIES: readonly FetchPriority[] = ["demand", "trace", "prefetch", "backup"];

/**
 * Runs requests by priority. A demand request starts when fewer than `demandInFlight`
 * run (else it waits for one of them to end). A trace request starts when fewer than
 * `traceInFlight` run and no demand request is queued; a prefetch or backup request starts only when no demand or trace request
 * runs or waits, and fewer than `backgroundInFlight` of them run. Within a level,
 * requests start in the order they were asked for.
 */
export class FetchScheduler {
  readonly #demandLimit: number;
  readonly #traceLimit: number;
  readonly #backgroundLimit: number;
  readonly #inFlight: Record<FetchPriority, number> = {
    demand: 0,
    trace: 0,
    prefetch: 0,
    backup: 0,
  };
  readonly #queues: Record<FetchPriority, (() => void)[]> = {
    demand: [],
    trace: [],
    prefetch: [],
    backup: [],
  };

  constructor(options: FetchSchedulerOptions = {}) {
    this.#demandLimit = options.demandInFlight ?? 32;
    this.#traceLimit = options.traceInFlight ?? 4;
    this.#backgroundLimit = options.backgroundInFlight ?? 2;
  }

  /** Runs `task` when its priority's turn comes; resolves or rejects as it does. */
  async run<T>(priority: FetchPriority, task: () => Promise<T>): Promise<T> {
    if (!this.#mayStart(priority)) {
      await new Promise<void>((resolve) => this.#queues[priority].push(resolve));
    } else {
      this.#inFlight[priority]++;
    }
    try {
      return await task();
    } finally {
      this.#inFlight[priority]--;
      this.#pump();
    }
  }

  /** Whether nothing of `priority` or above runs or waits. */
  idleAbove(priority: FetchPriority): boolean {
    for (const level of FETCH_PRIORITIES) {
      if (level === priority) return true;
      if (this.#inFlight[level] > 0 || this.#queues[level].length > 0) return false;
    }
    return true;
  }

  /** Counts of running and waiting requests. */
  stats(): SchedulerStats {
    const queued = { demand: 0, trace: 0, prefetch: 0, backup: 0 };
    for (const level of FETCH_PRIORITIES) queued[level] = this.#queues[level].length;
    return { inFlight: { ...this.#inFlight }, queued };
  }

  #mayStart(priority: FetchPriority): boolean {
    const busy = this.#inFlight;
    switch (priority) {
      case "demand":
        return this.#queues.demand.length === 0 && busy.demand < this.#demandLimit;
      case "trace":
        return this.#queues.demand.length === 0 && this.#queues.trace.length === 0 &&
          busy.trace < this.#traceLimit;
      case "prefetch":
      case "backup":
        return this.idleAbove(priority) && this.#queues[priority].length === 0 &&
          busy.prefetch + busy.backup < this.#backgroundLimit;
    }
  }

  /** Starts whatever may start now, highest level first. */
  #pump(): void {
    for (const level of FETCH_PRIORITIES) {
      const queue = this.#queues[level];
      while (queue.length > 0 && this.#mayStartQueued(level)) {
        this.#inFlight[level]++;
        queue.shift()!();
      }
      // Strict order: a level with requests still waiting holds back every lower one.
      if (queue.length > 0) return;
    }
  }

  #mayStartQueued(level: FetchPriority): boolean {
    const busy = this.#inFlight;
    switch (level) {
      case "demand":
        return busy.demand < this.#demandLimit;
      case "trace":
        return busy.trace < this.#traceLimit;
      case "prefetch":
      case "backup":
        return busy.demand === 0 && busy.trace === 0 &&
          busy.prefetch + busy.backup < this.#backgroundLimit;
    }
  }
}
