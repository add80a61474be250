import { ChunkCache } from "../cache/chunk_cache.ts";
import { UsageError } from "../errors.ts";
import { serveNbd } from "../nbd/nbd_server.ts";
import { openStore } from "../repo/open_store.ts";
import { Repository } from "../repo/repository.ts";
import { openVersionDisk } from "../disk/version_disk.ts";
import { DEFAULT_CACHE_BYTES, stateDir } from "../state_dir.ts";
import { formatBytes, parseSize } from "../progress.ts";
import { parseFlags, parseRepoRef, s3Options, STORE_FLAGS } from "./args.ts";
import type { Command } from "./command.ts";
import { removeStaleSocket } from "../unix_socket.ts";
import { ReadOnlyDevice } from "../disk/read_only_device.ts";
import { pathExists } from "../fs_atomic.ts";

export const nbdCommand: Command = {
  name: "nbd",
  summary: "serve one disk of a version over NBD (for debugging and benchmarks)",
  usage: `vat nbd REPO[@N] --socket PATH [--disk system|user] [--overlay PATH [--keep-overlay]]
        [--read-only] [--cache DIR] [--cache-size SIZE] [--retry-for SECONDS] [--tcp ADDR:PORT] [--name EXPORT]

Serves the disk through the chunk cache (default DIR: the state directory's cache),
fetching missing chunks from REPO on demand; an unreachable repository is retried
for --retry-for seconds (default 60), then the read fails with an I/O error. Without --overlay the export is read-only.
With --overlay, writes go to that copy-on-write overlay: a system disk's overlay is
thrown away at start (lockdown) unless --keep-overlay; a user disk's persists.
--read-only serves the disk as it is and refuses every write: with --overlay, an
existing overlay (a user disk as its guest left it) that is neither written nor
thrown away.
Stops on SIGINT or SIGTERM, flushing the overlay.`,
  async run(args) {
    const { values, positionals } = parseFlags("nbd", args, {
      ...STORE_FLAGS,
      socket: { type: "string" },
      disk: { type: "string", default: "system" },
      overlay: { type: "string" },
      "keep-overlay": { type: "boolean" },
      "read-only": { type: "boolean" },
      cache: { type: "string" },
      "cache-size": { type: "string" },
      state: { type: "string" },
      tcp: { type: "string" },
      name: { type: "string", default: "" },
      "retry-for": { type: "string", default: "60" },
    });
    const retryFor = Number(values["retry-for"]);
    if (!(retryFor >= 0)) {
      throw new UsageError(`nbd: --retry-for "${values["retry-for"]}" is not a number of seconds`);
    }
    if (positionals.length !== 1) throw new UsageError("nbd: give exactly one REPO[@N]");
    if (!values.socket && !values.tcp) {
      throw new UsageError("nbd: --socket PATH (or --tcp ADDR:PORT) is required");
    }
    const ref = parseRepoRef(positionals[0]);
    const readOnly = values["read-only"] ?? false;
    if (readOnly && values.overlay && !(await pathExists(values.overlay))) {
      throw new UsageError(
        `nbd: the overlay ${values.overlay} does not exist; --read-only serves an existing one`,
      );
    }
    let tcp: { hostname: string; port: number } | undefined;
    if (values.tcp) {
      const m = /^(.*):(\d+)$/.exec(values.tcp);
      if (!m) throw new UsageError(`nbd: --tcp "${values.tcp}" is not ADDR:PORT`);
      tcp = { hostname: m[1] || "127.0.0.1", port: Number(m[2]) };
    }
    // --retry-for bounds the store's own retries too, not only the cache's.
    const store = await openStore(ref.repo, {
      s3: s3Options(values),
      retry: { maxTotalMs: Math.min(30_000, retryFor * 1000) },
    });
    const cache = await ChunkCache.open({
      dir: values.cache ?? `${stateDir(values.state)}/cache`,
      budgetBytes: values["cache-size"]
        ? parseSize(values["cache-size"], "--cache-size")
        : DEFAULT_CACHE_BYTES,
    });
    try {
      const repo = await Repository.open(store);
      const version = await repo.resolveVersion(ref.version);
      const disk = await openVersionDisk(repo, version, values.disk, cache, {
        overlayPath: values.overlay,
        discardOverlay: values.disk === "system" && !values["keep-overlay"] && !readOnly,
        retryForMs: retryFor * 1000,
      });
      const device = readOnly ? new ReadOnlyDevice(disk.device) : disk.device;
      if (values.socket) await removeStaleSocket(values.socket);
      const server = serveNbd({
        exports: new Map([[values.name, {
          device,
          description: `${values.disk} disk of version ${version.number} of ${store.location}`,
        }]]),
        socketPath: values.socket,
        tcp,
      });
      console.log(
        `serving the ${values.disk} disk (${
          formatBytes(disk.device.sizeBytes)
        }) of version ${version.number}` +
          ` at ${values.socket ?? `${server.tcpAddr?.hostname}:${server.tcpAddr?.port}`}` +
          (disk.overlay && !readOnly ? `, writes to ${disk.overlay.path}` : ", read-only"),
      );
      await new Promise<void>((resolve) => {
        Deno.addSignalListener("SIGINT", resolve);
        Deno.addSignalListener("SIGTERM", resolve);
      });
      await server.close();
      await device.close();
      return 0;
    } finally {
      await cache.close();
      await store.close();
    }
  },
};
