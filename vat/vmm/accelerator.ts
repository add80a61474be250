/**
 * `AcceleratorChoice`: which accelerator (KVM or TCG) guests run on, decided once per
 * host boot and corrected by what guests show.
 *
 * The setting (`--accel`, `accel` in config.json, or `VAT_ACCEL`) gives the user the
 * last word: `kvm` and `tcg` are used as they are, unwatched. `auto` (the default)
 * asks `probeKvm()`, which boots a Linux kernel under KVM, and remembers the answer in
 * a small file keyed by the host's boot id (`/proc/sys/kernel/random/boot_id`) and the
 * QEMU binary, so neither a daemon's restart nor another state directory of the same
 * user pays for the probe again; a reboot (a new kernel, a new KVM module) probes
 * afresh. Under `auto`, a guest that the probe let onto KVM is still watched by
 * `VirtualMachine.start()`; one that shows no sign of life is restarted under TCG, and
 * `kvmHangsGuests()` makes that the answer for the rest of the host boot.
 *
 * The file lives in the user's cache directory (`$XDG_CACHE_HOME/vat/accel.json`,
 * else `~/.cache/vat/accel.json`), which other local users cannot write: what it says
 * decides whether guests hang.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { writeFileAtomic } from "../fs_atomic.ts";
import type { Accelerator } from "./qemu_args.ts";
import { KVM_DEVICE, type KvmProbeOptions, type KvmProbeResult, probeKvm } from "./kvm_probe.ts";
import { QEMU_BINARY } from "./qemu_process.ts";

/** What the user may ask for. */
export type AccelSetting = "auto" | "kvm" | "tcg";

/** Every setting, for messages and parsing. */
export const ACCEL_SETTINGS: readonly AccelSetting[] = ["auto", "kvm", "tcg"];

/** The environment variable that sets the accelerator where no flag or config does. */
export const ACCEL_ENV = "VAT_ACCEL";

/** What guests run on now, and why. */
export interface AccelDecision {
  /** The user's setting. */
  setting: AccelSetting;
  /** What guests run on. */
  accel: Accelerator;
  /** Why, in words (shown by `vat status` and the UI). */
  reason: string;
  /** True once a guest hung under KVM on this host and the choice fell back to TCG. */
  fellBack: boolean;
}

/** The message every surface shows once KVM has hung a guest. */
export const KVM_HANGS_GUESTS = "KVM on this host hangs guests; using TCG";

/** How the choice is made. */
export interface AcceleratorChoiceOptions {
  /** Default `auto`. */
  setting?: AccelSetting;
  /** Where the answer is remembered; null: nowhere. Default: the user's cache dir. */
  cacheFile?: string | null;
  /** The QEMU binary (default `qemu-system-x86_64`, found on PATH). */
  qemuBinary?: string;
  /** Passed to the probe (tests point it at a stand-in device). */
  kvmDevice?: string;
  /** The probe (tests replace it); default `probeKvm`. */
  probe?: (options: KvmProbeOptions) => Promise<KvmProbeResult>;
  /** Where one line goes when the choice is made or falls back. Default: stderr. */
  log?: (line: string) => void;
}

/** What the cache file holds. */
interface _Remembered {
  bootId: string;
  qemu: string;
  works: boolean;
  reason: string;
  fellBack: boolean;
  decidedAt: string;
}

/** Which accelerator guests run on; one per daemon (or per process: `sharedAcceleratorChoice`). */
export class AcceleratorChoice {
  readonly setting: AccelSetting;
  #options: AcceleratorChoiceOptions;
  #decision?: Promise<AccelDecision>;
  #current?: AccelDecision;

  constructor(options: AcceleratorChoiceOptions = {}) {
    this.setting = options.setting ?? "auto";
    this.#options = options;
  }

  /** The decision once made (for status), else undefined. */
  get current(): AccelDecision | undefined {
    return this.#current;
  }

  /**
   * What guests run on: the setting, or under `auto` the remembered or probed answer.
   * The first call probes (up to the probe's time limit); later calls return the same
   * answer until `kvmHangsGuests()`. Never rejects.
   */
  decide(): Promise<AccelDecision> {
    this.#decision ??= this.#decide().then((decision) => {
      this.#current = decision;
      return decision;
    });
    return this.#decision;
  }

  /**
   * Records that a guest (`vmName`) hung under KVM: from now on, and for the rest of
   * this host boot, guests run under TCG. Logs one line.
   */
  async kvmHangsGuests(vmName: string): Promise<AccelDecision> {
    const decision: AccelDecision = {
      setting: this.setting,
      accel: "tcg",
      reason: KVM_HANGS_GUESTS,
      fellBack: true,
    };
    const wasFallback = this.#current?.fellBack === true;
    this.#current = decision;
    this.#decision = Promise.resolve(decision);
    if (!wasFallback) {
      this.#log(`${KVM_HANGS_GUESTS} (${vmName} showed no sign of life under KVM)`);
    }
    await this.#remember({ works: false, reason: KVM_HANGS_GUESTS, fellBack: true });
    return decision;
  }

  async #decide(): Promise<AccelDecision> {
    if (this.setting !== "auto") {
      return {
        setting: this.setting,
        accel: this.setting,
        reason: `${this.setting === "kvm" ? "KVM" : "TCG"} as set (accel ${this.setting})`,
        fellBack: false,
      };
    }
    const remembered = await this.#recall();
    if (remembered) {
      return {
        setting: "auto",
        accel: remembered.works ? "kvm" : "tcg",
        reason: remembered.reason,
        fellBack: remembered.fellBack,
      };
    }
    const probe = this.#options.probe ?? probeKvm;
    const result = await probe({
      qemuBinary: this.#options.qemuBinary,
      kvmDevice: this.#options.kvmDevice,
    }).catch((err) => ({ works: false, reason: `the KVM probe failed: ${err}; using TCG` }));
    await this.#remember({ works: result.works, reason: result.reason, fellBack: false });
    return {
      setting: "auto",
      accel: result.works ? "kvm" : "tcg",
      reason: result.reason,
      fellBack: false,
    };
  }

  /** The remembered answer for this host boot and QEMU, or null. */
  async #recall(): Promise<_Remembered | null> {
    const file = this.#cacheFile();
    if (!file) return null;
    const [bootId, qemu] = await Promise.all([_bootId(), this.#qemuPath()]);
    if (!bootId) return null;
    try {
      const raw = JSON.parse(await Deno.readTextFile(file));
      const entry = raw?.[this.#kvmDevice()];
      if (
        entry && entry.bootId === bootId && entry.qemu === qemu &&
        typeof entry.works === "boolean" && typeof entry.reason === "string"
      ) {
        return { ...entry, fellBack: entry.fellBack === true };
      }
    } catch {
      // Absent or unreadable: probe again.
    }
    return null;
  }

  async #remember(answer: { works: boolean; reason: string; fellBack: boolean }): Promise<void> {
    const file = this.#cacheFile();
    if (!file) return;
    const [bootId, qemu] = await Promise.all([_bootId(), this.#qemuPath()]);
    if (!bootId) return;
    try {
      let all: Record<string, unknown> = {};
      try {
        const raw = JSON.parse(await Deno.readTextFile(file));
        if (raw && typeof raw === "object" && !Array.isArray(raw)) all = raw;
      } catch {
        // Start afresh.
      }
      const entry: _Remembered = { bootId, qemu, ...answer, decidedAt: new Date().toISOString() };
      all[this.#kvmDevice()] = entry;
      await Deno.mkdir(file.slice(0, file.lastIndexOf("/")), { recursive: true, mode: 0o700 });
      // Two daemons may probe at once: each writes a whole file, and both say the same.
      await writeFileAtomic(file, new TextEncoder().encode(JSON.stringify(all, null, 2) + "\n"), {
        mode: 0o600,
      });
    } catch (err) {
      this.#log(`accelerator: could not remember the answer in ${file}: ${err}`);
    }
  }

  #cacheFile(): string | null {
    if (this.#options.cacheFile !== undefined) return this.#options.cacheFile;
    return defaultAccelCacheFile();
  }

  #kvmDevice(): string {
    return this.#options.kvmDevice ?? KVM_DEVICE;
  }

  /** The QEMU binary's path, so a different QEMU (or a stand-in) is probed anew. */
  #qemuPath(): Promise<string> {
    return _resolveOnPath(this.#options.qemuBinary ?? QEMU_BINARY);
  }

  #log(line: string): void {
    (this.#options.log ?? ((l: string) => console.error(l)))(line);
  }
}

/** `$XDG_CACHE_HOME/vat/accel.json`, else `~/.cache/vat/accel.json`; null without a home. */
export function defaultAccelCacheFile(): string | null {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/vat/accel.json`;
  const home = Deno.env.get("HOME");
  return home ? `${home}/.cache/vat/accel.json` : null;
}

/** Parses a setting (from a flag, config.json or `VAT_ACCEL`); `what` names the source. */
export function parseAccelSetting(text: string, what: string): AccelSetting {
  if ((ACCEL_SETTINGS as readonly string[]).includes(text)) return text as AccelSetting;
  throw new UsageError(`${what} must be one of ${ACCEL_SETTINGS.join(", ")}, not "${text}"`);
}

/** The setting from `VAT_ACCEL`, or undefined when it is not set. */
export function accelSettingFromEnv(): AccelSetting | undefined {
  const text = Deno.env.get(ACCEL_ENV);
  return text ? parseAccelSetting(text, ACCEL_ENV) : undefined;
}

let _shared: AcceleratorChoice | undefined;

/**
 * The process's own choice, for guests started outside a daemon (`vat trace record`,
 * tests): the setting from `VAT_ACCEL`, else `auto`, remembered in the user's cache.
 */
export function sharedAcceleratorChoice(): AcceleratorChoice {
  _shared ??= new AcceleratorChoice({ setting: accelSettingFromEnv() });
  return _shared;
}

async function _bootId(): Promise<string | null> {
  try {
    return (await Deno.readTextFile("/proc/sys/kernel/random/boot_id")).trim() || null;
  } catch {
    return null;
  }
}

async function _resolveOnPath(binary: string): Promise<string> {
  const candidates = binary.includes("/")
    ? [binary]
    : (Deno.env.get("PATH") ?? "").split(":").filter(Boolean).map((dir) => `${dir}/${binary}`);
  for (const candidate of candidates) {
    try {
      if ((await Deno.stat(candidate)).isFile) return await Deno.realPath(candidate);
    } catch {
      // Not here.
    }
  }
  return binary;
}
