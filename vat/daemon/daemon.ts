/**
 * `vat` (and `vat --headless`): the VAT daemon. It owns the state directory (one
 * daemon per directory), opens the chunk cache and the state database, reaps what a
 * killed predecessor left running, serves the API on loopback (and, with `--listen`,
 * over TLS as the remote display), opens the UI in a local browser unless headless, and
 * stops every appliance when told to stop.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import { ChunkCache } from "../cache/chunk_cache.ts";
import { UsageError } from "../errors.ts";
import { writeFileAtomic } from "../fs_atomic.ts";
import { checkHost, hostWithPort, loopbackHosts } from "../api/host_check.ts";
import { apiApp } from "../api/api_app.ts";
import { type DaemonInfo, readDaemonInfo } from "../api/daemon_info.ts";
import { AcceleratorChoice, type AccelSetting } from "../vmm/accelerator.ts";
import { reapOrphan } from "../vmm/run_dir.ts";
import { ensureDemoAppliance } from "../demo/demo_repository.ts";
import { AdaptiveRate } from "../prefetch/adaptive_rate.ts";
import { FetchScheduler } from "../fetch/fetch_scheduler.ts";
import { Prefetcher } from "../prefetch/prefetcher.ts";
import { Appliances } from "../appliance/appliances.ts";
import { type BackupConfig, Backups } from "../backup/backups.ts";
import { formatBytes } from "../progress.ts";
import { openBrowser, type OpenedBrowser } from "./open_browser.ts";
import { type ListenAddress, type RemoteDisplay, serveRemoteDisplay } from "./remote_display.ts";
import { StateDb } from "../appliance/state_db.ts";
import { InstallDir, type Slot } from "../update/install_dir.ts";
import { RESTART_EXIT_CODE } from "../update/launcher_script.ts";
import type { UpdateSettings } from "../update/update_settings.ts";
import { Updater } from "../update/updater.ts";
import { DirectoryUsers } from "../users/directory_users.ts";
import { currentUsersAppliances } from "../users/current_user_appliances.ts";

/** Where the daemon listens unless told otherwise. */
export const DEFAULT_DAEMON_PORT = 8460;

/** The background prefetcher's bandwidth cap unless `--prefetch-limit` (bytes per second). */
export const DEFAULT_PREFETCH_LIMIT = 4 * 1024 * 1024;

/** How the daemon runs. */
export interface DaemonOptions {
  stateDir: string;
  hostname?: string;
  /** 0 picks a free port. */
  port?: number;
  cacheBytes: number;
  /** The background prefetcher's bandwidth cap, bytes per second; 0 turns it off. */
  prefetchLimitBytesPerSecond?: number;
  version: string;
  /** Set up and add the demo appliance (the embedded default) before serving. */
  demo?: boolean;
  /** Back user disks up to a data repository (`--data-repo`, `--user-key`). */
  backup?: BackupConfig;
  /** Where progress lines go (default: standard error). */
  log?: (line: string) => void;
  /** KVM, TCG, or `auto` (the default: probe, and watch guests on KVM). */
  accel?: AccelSetting;
  /** Also serve the app over TLS here (the remote display; `--listen`). */
  listen?: ListenAddress;
  /** Open the UI in a local browser (not headless); full screen with `kiosk`. */
  browser?: { kiosk: boolean };
  /**
   * A directory of users (`--directory`): users log in, and the appliances are the
   * logged-in user's (docs/USERS.md). Without it the VAT has one unnamed user.
   */
  directory?: {
    location: string;
    checkIntervalMs?: number;
    snapshotIntervalMs?: number;
    uploadBytesPerSecond?: number;
    leaseTtlMs?: number;
  };
  /** Called once the API listens, with its URL. */
  onListen?(url: string): void;
  /** Self-update (docs/UPDATE.md): the release repository, its key, the slots. */
  update?: UpdateSettings;
  /** Milliseconds between update checks (0: only when asked; default 6 hours). */
  updateIntervalMs?: number;
}

/** How often the daemon checks its release repository unless configured. */
export const DEFAULT_UPDATE_INTERVAL_MS = 6 * 3600_000;

/** Runs the daemon until SIGINT or SIGTERM; returns the exit code. */
export async function runDaemon(options: DaemonOptions): Promise<number> {
  await Deno.mkdir(options.stateDir, { recursive: true, mode: 0o700 });
  const lock = await _lockStateDir(options.stateDir);
  try {
    return await _runLocked(options);
  } finally {
    lock.close();
  }
}

async function _runLocked(options: DaemonOptions): Promise<number> {
  const { stateDir } = options;
  const log = options.log ?? ((line) => console.error(line));
  for await (const entry of _readDirOrEmpty(`${stateDir}/run`)) {
    if (entry.isDirectory) await reapOrphan(`${stateDir}/run/${entry.name}`);
  }
  // The KVM probe takes up to its time limit where KVM hangs guests: start it now, so
  // the first appliance start finds the answer ready (it is kept for the host boot).
  const accelerator = new AcceleratorChoice({ setting: options.accel ?? "auto", log });
  accelerator.decide().then((d) => log(`accelerator: ${d.reason}`));
  const cache = await ChunkCache.open({
    dir: `${stateDir}/cache`,
    budgetBytes: options.cacheBytes,
  });
  let backups: Backups | null = null;
  try {
    backups = options.backup ? await Backups.open(options.backup, stateDir) : null;
  } catch (err) {
    await cache.close();
    throw err;
  }
  if (backups) {
    const limit = backups.limiter.bytesPerSecond;
    log(
      `backing user disks up to ${backups.location}` +
        (limit ? ` (at most ${formatBytes(limit)}/s)` : ""),
    );
  } else {
    log("no data repository: user disks stay on this PC and nothing is backed up");
  }
  const db = StateDb.open(`${stateDir}/vat.sqlite`);
  // One scheduler for every repository: they share the VAT's link.
  const scheduler = new FetchScheduler();
  let prefetcher: Prefetcher | null = null;
  const users = options.directory
    ? new DirectoryUsers({
      stateDir,
      location: options.directory.location,
      checkIntervalMs: options.directory.checkIntervalMs,
      cache,
      scheduler,
      accelerator,
      onPrefetchNeeded: () => prefetcher?.kick(),
      log,
      snapshotIntervalMs: options.directory.snapshotIntervalMs,
      uploadBytesPerSecond: options.directory.uploadBytesPerSecond,
      leaseTtlMs: options.directory.leaseTtlMs,
    })
    : null;
  if (users) log(`users log in against the directory ${users.location}`);
  const appliances = users ? currentUsersAppliances(users) : new Appliances(db, cache, stateDir, {
    scheduler,
    onPrefetchNeeded: () => prefetcher?.kick(),
    backups,
    accelerator,
  });
  if (backups) {
    // Backup upload is the lowest level of the VAT's traffic.
    backups.schedule = (task) => scheduler.run("backup", task);
    appliances.resumeBackups().catch((err) => log(`backup: ${(err as Error).message}`));
  }
  const prefetchLimit = options.prefetchLimitBytesPerSecond ?? DEFAULT_PREFETCH_LIMIT;
  if (prefetchLimit > 0) {
    prefetcher = new Prefetcher({
      cache,
      scheduler,
      rate: new AdaptiveRate({ maxBytesPerSecond: prefetchLimit }),
      targets: () =>
        users ? users.current?.appliances.prefetchTargets() ?? [] : appliances.prefetchTargets(),
      log,
    });
  }
  if (options.demo) {
    await ensureDemoAppliance(stateDir, appliances, log);
  }
  const installDir = options.update ? new InstallDir(options.update.installDir) : null;
  const updater = options.update?.repo && options.update.key && installDir
    ? new Updater({
      repo: options.update.repo,
      key: options.update.key,
      installDir,
      cache,
      scheduler,
      runningVersion: options.version,
      runningSlot: options.update.runningSlot,
      log,
    })
    : null;
  const token = randomBytes(32).toString("base64url");
  await writeFileAtomic(`${stateDir}/token`, new TextEncoder().encode(token + "\n"), {
    mode: 0o600,
  });
  const app = apiApp({
    appliances,
    token,
    stateDir,
    version: options.version,
    cacheStats: () => cache.stats(),
    updater,
    accel: () => accelerator.current ?? null,
    remoteDisplay: () => remote && { url: remote.url, fingerprint: remote.fingerprint },
    users: users ?? undefined,
  });
  let server: Deno.HttpServer<Deno.NetAddr> | null = null;
  let remote: RemoteDisplay | null = null;
  try {
    const hostname = options.hostname ?? "127.0.0.1";
    let hosts: string[] = [];
    server = Deno.serve({
      hostname,
      port: options.port ?? DEFAULT_DAEMON_PORT,
      onListen: () => {},
    }, checkHost(app.fetch, () => hosts));
    // Known once it listens (--port 0 picks one).
    const port = server.addr.port;
    hosts = [...new Set([...loopbackHosts(port), hostWithPort(hostname, port)])];
    if (options.listen) {
      remote = await serveRemoteDisplay({ stateDir, listen: options.listen, handler: app.fetch });
    }
  } catch (err) {
    await server?.shutdown();
    await backups?.close();
    await cache.close();
    db.close();
    if (err instanceof Deno.errors.AddrInUse) {
      throw new UsageError(
        `port ${options.port ?? DEFAULT_DAEMON_PORT} is in use; choose another with --port N`,
        { cause: err },
      );
    }
    throw err;
  }
  const url = `http://${server.addr.hostname}:${server.addr.port}/`;
  const info: DaemonInfo = { url, pid: Deno.pid, stateDir, startedAt: new Date().toISOString() };
  await writeFileAtomic(`${stateDir}/daemon.json`, new TextEncoder().encode(JSON.stringify(info)));
  options.onListen?.(url);
  prefetcher?.kick();
  // The token rides in the fragment, which the browser never sends to a server.
  log(`sign in to the UI at ${url}signin#token=${token}`);
  if (remote) {
    log(
      `remote display at ${remote.url} (TLS; ${
        remote.certificateCreated ? "new" : "the"
      } certificate's SHA-256 fingerprint: ${remote.fingerprint})`,
    );
    log(`sign in remotely at ${remote.url}signin#token=${token}`);
  }
  let browser: OpenedBrowser | null = null;
  if (options.browser) {
    browser = await openBrowser({
      // With a directory the kiosk shows the login screen; the token stays the admin's.
      signInUrl: users ? url : `${url}signin#token=${token}`,
      stateDir,
      kiosk: options.browser.kiosk,
      log,
    });
  }

  let exitCode = 0;
  let updateTimer: ReturnType<typeof setTimeout> | undefined;
  await new Promise<void>((resolve) => {
    Deno.addSignalListener("SIGINT", resolve);
    Deno.addSignalListener("SIGTERM", resolve);
    const runningSlot = options.update?.runningSlot ?? null;
    if (runningSlot && installDir) {
      // The launcher marks this slot good once it answers its health check.
      _markHealthy(url, installDir, runningSlot, log);
    }
    if (!updater) return;
    // A staged release starts when nothing would be lost: no appliance running or
    // suspending. Only a launcher can start it, so without one it waits for the next start.
    let staged = false;
    const switchIfIdle = async () => {
      if (!staged || !runningSlot) return;
      const busy = (await appliances.list()).filter((a) =>
        a.state !== "stopped" && a.state !== "suspended"
      );
      if (busy.length > 0) return;
      log("update: no appliance is running; restarting into the staged release");
      exitCode = RESTART_EXIT_CODE;
      resolve();
    };
    appliances.addEventListener("change", () => void switchIfIdle().catch(() => {}));
    updater.onStaged = (result) => {
      staged = true;
      if (!runningSlot) {
        log(
          `update: ${result.reason}; start vat with ${installDir!.dir}/vat-launcher.sh to run it`,
        );
      }
      void switchIfIdle().catch(() => {});
    };
    const intervalMs = options.updateIntervalMs ?? DEFAULT_UPDATE_INTERVAL_MS;
    if (intervalMs > 0) {
      const tick = async () => {
        try {
          await updater.apply();
        } catch (err) {
          // Recorded in the status; the next try is a whole interval away, so a
          // release that can never install (4xx, a refusal) is not retried in a loop.
          log(`update: ${(err as Error).message}`);
        }
        updateTimer = setTimeout(tick, intervalMs);
      };
      updateTimer = setTimeout(tick, Math.min(intervalMs, 30_000));
    }
  });
  clearTimeout(updateTimer);
  await updater?.close();
  await browser?.close();
  await prefetcher?.close();
  await (users ? users.close() : appliances.close());
  await backups?.close();
  await Promise.race([
    Promise.all([server.shutdown(), remote?.server.shutdown()]),
    new Promise((r) => setTimeout(r, 2000)),
  ]);
  await cache.close();
  db.close();
  await Deno.remove(`${stateDir}/daemon.json`).catch(() => {});
  return exitCode;
}

/** Asks this daemon's own health check and, once it answers, writes the launcher's mark. */
async function _markHealthy(
  url: string,
  installDir: InstallDir,
  slot: Slot,
  log: (line: string) => void,
): Promise<void> {
  try {
    const res = await fetch(`${url}api/health`, { signal: AbortSignal.timeout(10_000) });
    const body = await res.json() as { ok?: boolean };
    if (!res.ok || body.ok !== true) throw new Error(`it answered ${res.status}`);
    await installDir.markHealthy(slot, Deno.pid);
  } catch (err) {
    log(`update: the health check of slot ${slot} failed: ${(err as Error).message}`);
  }
}

/**
 * Takes `daemon.lock` in the state directory, held (an exclusive flock) for the
 * daemon's life: the kernel lets go of it when the daemon dies, however it dies. So a
 * second daemon is refused while one runs, and never because of a `daemon.json` that a
 * killed daemon left behind (its pid may belong to another process by now).
 */
async function _lockStateDir(stateDir: string): Promise<Deno.FsFile> {
  const lock = await Deno.open(`${stateDir}/daemon.lock`, {
    read: true,
    write: true,
    create: true,
    mode: 0o600,
  });
  // Deno has no non-blocking flock: a lock not granted at once is held by a daemon.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const held = await Promise.race([
    lock.lock(true).then(() => false),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), 500)),
  ]);
  clearTimeout(timer);
  if (held) {
    const running = await readDaemonInfo(stateDir);
    lock.close();
    throw new UsageError(
      running
        ? `a vat daemon (pid ${running.pid}) already runs for ${stateDir} at ${running.url}`
        : `a vat daemon already runs for ${stateDir} (it holds ${stateDir}/daemon.lock)`,
    );
  }
  return lock;
}

async function* _readDirOrEmpty(path: string): AsyncIterable<Deno.DirEntry> {
  try {
    yield* Deno.readDir(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}
