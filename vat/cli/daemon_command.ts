import { runDaemon } from "../daemon/daemon.ts";
import { readDaemonConfig } from "../daemon/daemon_config.ts";
import { parseListenAddress } from "../daemon/remote_display.ts";
import { UsageError } from "../errors.ts";
import { DEFAULT_CACHE_BYTES, stateDir } from "../state_dir.ts";
import { parseFlags } from "./args.ts";
import { parseSize } from "../progress.ts";
import type { Command } from "./command.ts";
import { VERSION } from "./version.ts";
import { parseBitRate } from "../rate_limiter.ts";
import { accelSettingFromEnv, parseAccelSetting } from "../vmm/accelerator.ts";

export const daemonCommand: Command = {
  name: "daemon",
  summary: "run the VAT daemon (what `vat` alone does)",
  usage: `vat [--headless | --kiosk] [--listen ADDR:PORT] [--state DIR] [--port N]
    [--cache-size SIZE] [--prefetch-limit SIZE] [--demo] [--data-repo REPO --user-key FILE]
    [--snapshot-interval SECONDS] [--backup-limit RATE] [--accel auto|kvm|tcg]

Runs the VAT: the daemon that runs appliances, with its API on 127.0.0.1 (port 8460
unless --port; 0 picks a free one). State (cache, overlays, database, logs) lives in
--state DIR, else $VAT_STATE, else ~/.local/share/vat. The CLI's other verbs talk to it.
Settings may also live in DIR/config.json ({"port": 8460, "hostname": "127.0.0.1",
"cacheSize": "20G", "prefetchLimit": "1M"}); flags win over it.
--prefetch-limit SIZE caps the background prefetch of subscribed appliances' newest
versions at SIZE bytes a second (default 4M; 0 turns it off); below the cap its rate
adapts to the link's latency. The guests' own reads and boot-trace replay always go first.
--demo sets up the embedded default first: a local repository in the state directory
holding a small busybox appliance built from Debian packages, added as "demo".
Without --headless it opens the UI in a local browser (Chromium's app window, or
Firefox) when there is a display and one is installed; --kiosk makes it full screen.
--listen ADDR:PORT (e.g. 0.0.0.0:8443) also serves the UI and API over TLS there, for a
browser on another machine: the certificate is self-signed, made on first use, kept in
DIR/remote-display/, and its SHA-256 fingerprint is printed and shown by vat status.
--data-repo REPO --user-key FILE back every user disk up to the user's data repository
(made there on first use; encrypted with the key from vat keygen --user): snapshots
at start, at stop and every --snapshot-interval seconds (default 300) while running,
uploaded in the background, capped at --backup-limit bits per second (e.g. 384k, 2M;
default no cap); a subscription's lease lapses --lease-ttl seconds (default 90)
after its VAT vanished. Without them user disks stay on this PC only, and vat says so.
--accel auto|kvm|tcg (or "accel" in config.json, or $VAT_ACCEL) chooses what guests
run on. auto (the default) boots a Linux kernel under KVM once per host boot to see
whether KVM works here, remembers the answer in ~/.cache/vat/accel.json, and starts a
guest that shows no sign of life under KVM (no console byte, no disk request) within
15 s again under TCG, saying "KVM on this host hangs guests; using TCG". kvm and tcg
are used as given, unwatched.
Stops on SIGINT or SIGTERM, shutting its appliances (and its browser) down first.`,
  async run(args) {
    const { values, positionals } = parseFlags("daemon", args, {
      headless: { type: "boolean" },
      kiosk: { type: "boolean" },
      listen: { type: "string" },
      state: { type: "string" },
      port: { type: "string" },
      "cache-size": { type: "string" },
      "prefetch-limit": { type: "string" },
      demo: { type: "boolean" },
      "data-repo": { type: "string" },
      "user-key": { type: "string" },
      "snapshot-interval": { type: "string" },
      "backup-limit": { type: "string" },
      "lease-ttl": { type: "string" },
      accel: { type: "string" },
    });
    if ((values["data-repo"] === undefined) !== (values["user-key"] === undefined)) {
      throw new UsageError(
        "--data-repo and --user-key go together (make a key: vat keygen --user)",
      );
    }
    const seconds = (flag: string, text: string | undefined) => {
      if (text === undefined) return undefined;
      const n = Number(text);
      if (!(Number.isFinite(n) && n > 0)) {
        throw new UsageError(`${flag} "${text}" is not a number of seconds`);
      }
      return n * 1000;
    };
    const backup = values["data-repo"]
      ? {
        dataRepo: values["data-repo"],
        userKeyPath: values["user-key"]!,
        snapshotIntervalMs: seconds("--snapshot-interval", values["snapshot-interval"]),
        uploadBytesPerSecond: values["backup-limit"] ? parseBitRate(values["backup-limit"]) : 0,
        leaseTtlMs: seconds("--lease-ttl", values["lease-ttl"]),
      }
      : undefined;
    if (positionals.length > 0) {
      throw new UsageError(`unknown command "${positionals.join(" ")}" (see: vat help)`);
    }
    const port = values.port === undefined ? undefined : Number(values.port);
    if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port < 65536)) {
      throw new UsageError(`--port "${values.port}" is not a port number`);
    }
    if (values.headless && values.kiosk) {
      throw new UsageError("--kiosk opens a browser; it cannot go with --headless");
    }
    const listen = values.listen === undefined ? undefined : parseListenAddress(values.listen);
    const dir = stateDir(values.state);
    const config = await readDaemonConfig(dir);
    return await runDaemon({
      stateDir: dir,
      port: port ?? config.port,
      hostname: config.hostname,
      cacheBytes: values["cache-size"]
        ? parseSize(values["cache-size"], "--cache-size")
        : config.cacheBytes ?? DEFAULT_CACHE_BYTES,
      prefetchLimitBytesPerSecond: values["prefetch-limit"] !== undefined
        ? parseSize(values["prefetch-limit"], "--prefetch-limit")
        : config.prefetchLimitBytesPerSecond,
      version: VERSION,
      accel: values.accel !== undefined
        ? parseAccelSetting(values.accel, "--accel")
        : accelSettingFromEnv() ?? config.accel,
      demo: values.demo,
      backup,
      listen,
      browser: values.headless ? undefined : { kiosk: values.kiosk ?? false },
      onListen(url) {
        console.log(`vat daemon listening at ${url} (state: ${dir})`);
      },
    });
  },
};
