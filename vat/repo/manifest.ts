/**
 * Version manifests (docs/FORMAT.md, "Versions"). The committed object
 * `versions/N/manifest.json` is a signed envelope (`signed_envelope.ts`) whose
 * signatures cover `SIGNING_CONTEXT` followed by the payload.
 *
 * @module
 */

import { IntegrityError, UsageError } from "../errors.ts";
import { checkKey } from "./store.ts";
import type { PublicKeyId, SigningKey } from "../auth/signing_key.ts";
import { openEnvelope, signEnvelope } from "./signed_envelope.ts";

const SIGNING_CONTEXT = "vat-manifest-v1\n";

/** A reference from a manifest to a stored object, pinned by its hash. */
export interface ObjectRef {
  key: string;
  sha256: string;
  sizeBytes: number;
}

/** One disk (or boot file) of a version. */
export interface DiskEntry {
  sizeBytes: number;
  chunkBytes: number;
  index: ObjectRef;
  /** Chunks that are not all-zero. */
  dataChunks: number;
  /** Bytes of chunk objects this version added to the repository for this disk. */
  newStoredBytes: number;
}

/** How the appliance runs (the VM description). */
export interface VmDescription {
  memoryMiB: number;
  cpus: number;
  /** Size of the scratch disk made fresh on the VAT; 0 or absent for none. */
  ephemeralSizeBytes?: number;
  /** Direct kernel boot: names of entries in `disks` holding the kernel and initrd. */
  kernel?: string;
  initrd?: string;
  append?: string;
}

/** The signed description of one version. */
export interface VersionManifest {
  format: 1;
  repoId: string;
  version: number;
  parent: number | null;
  createdAt: string;
  publisher: PublicKeyId;
  /** Random, so that two commits never have identical bytes. */
  nonce: string;
  vm: VmDescription;
  /** "system", "user", and boot files such as "kernel" and "initrd". */
  disks: Record<string, DiskEntry>;
  /** When true, a VAT refuses to start any older version of this appliance. */
  updateRequired?: boolean;
  note?: string;
  /** In a data repository: the user-disk snapshot this version commits. */
  snapshot?: SnapshotRecord;
  /**
   * In a data repository: the subscription (series) this version belongs to, so that
   * a version cannot be copied from one series into another (docs/SECURITY.md).
   */
  subscription?: string;
  /** In a release repository: which vat this version is and how it runs (docs/UPDATE.md). */
  release?: ReleaseRecord;
}

/** What a release repository's version records of the vat it holds (docs/FORMAT.md). */
export interface ReleaseRecord {
  /** vat's own version (`vat/cli/version.ts`), `MAJOR.MINOR.PATCH`. */
  vatVersion: string;
  /** A VAT running an older vat than this must not install this release. */
  minFrom?: string;
  /** `bundle`: `vat.js` run by the Deno runtime `deno` beside it; `binary`: one executable `vat`. */
  kind: "bundle" | "binary";
  /** Each disk of the version is one file of the release: its path in the slot and mode. */
  files: Record<string, { path: string; mode: number }>;
}

/** `MAJOR.MINOR.PATCH` with an optional `-suffix`, as vat's versions are written. */
export const VAT_VERSION_PATTERN = /^\d{1,6}\.\d{1,6}\.\d{1,6}(-[0-9A-Za-z.-]{1,32})?$/;

/** A release file's path: relative, `/`-separated, no `..`. */
const _RELEASE_PATH = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}(\/[A-Za-z0-9_][A-Za-z0-9._-]{0,99}){0,7}$/;

/** What a data repository's version records of its snapshot (docs/FORMAT.md). */
export interface SnapshotRecord {
  /** Unique per snapshot: a resumed upload finds its own commit by it. */
  id: string;
  takenAt: string;
  /** "start", "stop", "periodic", "now", "undo", "first". */
  reason: string;
  /** Bytes of chunks that changed since the version before. */
  changedBytes: number;
  /** Bytes of chunks that are not all zeroes. */
  dataBytes: number;
  /** The VAT that took it. */
  vatId: string;
  /** An undo: the version whose content this one commits again. */
  undoneTo?: number;
}

/**
 * Serializes and signs a manifest into the bytes of its committed object; throws
 * `UsageError` naming the field when it is out of bounds (`checkManifestFields`), so
 * no version is published that a VAT would refuse.
 */
export function signManifest(manifest: VersionManifest, key: SigningKey): Uint8Array {
  checkManifestFields(
    manifest,
    (field, why) => new UsageError(`cannot publish: ${field} is invalid: ${why}`),
  );
  return signEnvelope(JSON.stringify(manifest, null, 2), SIGNING_CONTEXT, key);
}

/** What a reader expects of a manifest (see `openManifest`). */
export interface ManifestExpectation {
  repoId: string;
  version: number;
  trustedKeys: readonly string[];
  /** A data repository's series: the manifest must name it in `subscription`. */
  subscription?: string;
}

/**
 * Parses a committed manifest object and checks it: a valid signature by one of
 * `trustedKeys`, the expected repository, version number (and subscription), and a
 * sane shape. Throws `IntegrityError` saying which check failed.
 */
export function openManifest(bytes: Uint8Array, expect: ManifestExpectation): VersionManifest {
  const what = `version ${expect.version}` +
    (expect.subscription !== undefined ? ` of subscription "${expect.subscription}"` : "");
  const { payload, signer } = openEnvelope(
    bytes,
    SIGNING_CONTEXT,
    expect.trustedKeys,
    what,
  );
  let manifest: VersionManifest;
  try {
    manifest = JSON.parse(payload);
  } catch (err) {
    throw new IntegrityError(`${what}: manifest payload is not valid JSON`, { cause: err });
  }
  if (manifest?.format !== 1) throw new IntegrityError(`${what}: unsupported manifest format`);
  if (manifest.repoId !== expect.repoId) {
    throw new IntegrityError(`${what}: manifest belongs to another repository`);
  }
  if (manifest.version !== expect.version) {
    throw new IntegrityError(`${what}: manifest claims to be version ${manifest.version}`);
  }
  if (manifest.publisher !== signer) {
    throw new IntegrityError(`${what}: publisher and signer differ`);
  }
  if (expect.subscription !== undefined && manifest.subscription !== expect.subscription) {
    throw new IntegrityError(
      `${what}: the manifest belongs to ` +
        (typeof manifest.subscription === "string"
          ? `subscription "${manifest.subscription}"`
          : "no subscription") +
        ` (copied from another series by the storage operator, or damaged); it is not used`,
    );
  }
  _checkShape(manifest, what);
  return manifest;
}

/** Whether `text` holds a control character (a kernel command line is one plain line). */
export function hasControlCharacters(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/** Bounds of a manifest's fields (docs/FORMAT.md, "Versions"). */
export const MANIFEST_LIMITS = {
  /** 1 TiB of guest memory. */
  maxMemoryMiB: 1024 * 1024,
  maxCpus: 256,
  /** 64 TiB: a disk index's own limit. */
  maxDiskBytes: 2 ** 46,
  /** A kernel or initrd. */
  maxBootFileBytes: 512 * 1024 * 1024,
  /** A kernel command line (Linux's own limit on x86 is 2 KiB). */
  maxAppendChars: 4096,
  /** The largest index object (`Repository.readDiskIndex`'s limit). */
  maxIndexBytes: 512 * 1024 * 1024,
  maxNoteChars: 4096,
} as const;

/**
 * Checks a manifest's fields: types, bounds, and that the boot files are disks of this
 * version (own properties only: a name such as "constructor" must not be found on the
 * prototype). Throws `makeError(field, why)`.
 */
export function checkManifestFields(
  m: VersionManifest,
  makeError: (field: string, why: string) => Error,
): void {
  const L = MANIFEST_LIMITS;
  const fail = makeError;
  const intIn = (value: unknown, min: number, max: number) =>
    Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= max;
  const show = (value: unknown) => {
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 40 ? `${text.slice(0, 40)}...` : text;
  };
  if (typeof m !== "object" || m === null || Array.isArray(m)) throw fail("", "not an object");
  if (typeof m.vm !== "object" || m.vm === null || Array.isArray(m.vm)) {
    throw fail("vm", "not an object");
  }
  const vm = m.vm;
  if (!intIn(vm.memoryMiB, 1, L.maxMemoryMiB)) {
    throw fail(
      "vm.memoryMiB",
      `${show(vm.memoryMiB)} is not a whole number from 1 to ${L.maxMemoryMiB}`,
    );
  }
  if (!intIn(vm.cpus, 1, L.maxCpus)) {
    throw fail("vm.cpus", `${show(vm.cpus)} is not a whole number from 1 to ${L.maxCpus}`);
  }
  if (vm.ephemeralSizeBytes !== undefined && !intIn(vm.ephemeralSizeBytes, 0, L.maxDiskBytes)) {
    throw fail(
      "vm.ephemeralSizeBytes",
      `${show(vm.ephemeralSizeBytes)} is not a size from 0 to ${L.maxDiskBytes} bytes`,
    );
  }
  if (
    vm.append !== undefined &&
    (typeof vm.append !== "string" || vm.append.length > L.maxAppendChars ||
      hasControlCharacters(vm.append))
  ) {
    throw fail(
      "vm.append",
      `${show(vm.append)} is not a line of text of at most ${L.maxAppendChars} characters`,
    );
  }
  if (m.parent !== null && m.parent !== undefined && !intIn(m.parent, 1, m.version - 1)) {
    throw fail("parent", `${show(m.parent)} is not an earlier version`);
  }
  if (m.updateRequired !== undefined && typeof m.updateRequired !== "boolean") {
    throw fail("updateRequired", `${show(m.updateRequired)} is not true or false`);
  }
  if (
    m.note !== undefined && (typeof m.note !== "string" || m.note.length > L.maxNoteChars)
  ) throw fail("note", `not a text of at most ${L.maxNoteChars} characters`);
  if (typeof m.disks !== "object" || m.disks === null || Array.isArray(m.disks)) {
    throw fail("disks", "not an object");
  }
  for (const [name, disk] of Object.entries(m.disks)) {
    if (!/^[a-z][a-z0-9-]{0,31}$/.test(name)) throw fail(`disks name "${name}"`, "not a disk name");
    const field = `disks.${name}`;
    if (typeof disk !== "object" || disk === null) throw fail(field, "not an object");
    if (!intIn(disk.sizeBytes, 0, L.maxDiskBytes)) {
      throw fail(
        `${field}.sizeBytes`,
        `${show(disk.sizeBytes)} is not a size up to ${L.maxDiskBytes} bytes`,
      );
    }
    if (
      !intIn(disk.chunkBytes, 4096, 16 * 1024 * 1024) || (disk.chunkBytes & (disk.chunkBytes - 1))
    ) {
      throw fail(
        `${field}.chunkBytes`,
        `${show(disk.chunkBytes)} is not a power of two from 4 KiB to 16 MiB`,
      );
    }
    for (const count of ["dataChunks", "newStoredBytes"] as const) {
      if (disk[count] !== undefined && !intIn(disk[count], 0, Number.MAX_SAFE_INTEGER)) {
        throw fail(`${field}.${count}`, `${show(disk[count])} is not a count`);
      }
    }
    const index = disk.index;
    if (typeof index !== "object" || index === null) throw fail(`${field}.index`, "not an object");
    if (typeof index.key !== "string" || !index.key.startsWith(`versions/${m.version}/`)) {
      throw fail(`${field}.index.key`, `not a key under versions/${m.version}/`);
    }
    try {
      checkKey(index.key);
    } catch {
      throw fail(`${field}.index.key`, "not a plain key");
    }
    if (typeof index.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(index.sha256)) {
      throw fail(`${field}.index.sha256`, "not 64 hex digits");
    }
    if (!intIn(index.sizeBytes, 0, L.maxIndexBytes)) {
      throw fail(
        `${field}.index.sizeBytes`,
        `${show(index.sizeBytes)} is not a size up to ${L.maxIndexBytes} bytes`,
      );
    }
  }
  for (const role of ["kernel", "initrd"] as const) {
    const file = vm[role];
    if (file === undefined) continue;
    if (typeof file !== "string" || !Object.hasOwn(m.disks, file)) {
      throw fail(`vm.${role}`, `${show(file)} is not a disk of this version`);
    }
    if (m.disks[file].sizeBytes > L.maxBootFileBytes) {
      throw fail(
        `vm.${role}`,
        `its disk "${file}" of ${
          m.disks[file].sizeBytes
        } bytes is larger than a boot file may be (${L.maxBootFileBytes} bytes)`,
      );
    }
  }
  if (vm.initrd !== undefined && vm.kernel === undefined) {
    throw fail("vm.initrd", "an initrd needs a kernel");
  }
  if (m.release !== undefined) {
    _checkRelease(m.release, m.disks, (field) => fail(field, "not a valid release record"));
  }
}

function _checkRelease(
  r: ReleaseRecord,
  disks: Record<string, DiskEntry>,
  fail: (field: string) => Error,
): void {
  if (typeof r !== "object" || r === null) throw fail("release");
  if (typeof r.vatVersion !== "string" || !VAT_VERSION_PATTERN.test(r.vatVersion)) {
    throw fail("release.vatVersion");
  }
  if (
    r.minFrom !== undefined &&
    (typeof r.minFrom !== "string" || !VAT_VERSION_PATTERN.test(r.minFrom))
  ) throw fail("release.minFrom");
  if (r.kind !== "bundle" && r.kind !== "binary") throw fail("release.kind");
  if (typeof r.files !== "object" || r.files === null) throw fail("release.files");
  const paths = new Set<string>();
  for (const [disk, file] of Object.entries(r.files)) {
    if (!Object.hasOwn(disks, disk)) throw fail(`release.files.${disk}`);
    if (
      typeof file?.path !== "string" || !_RELEASE_PATH.test(file.path) ||
      file.path.split("/").some((s) => s === "." || s === "..") || paths.has(file.path) ||
      ["release.json", "launch"].includes(file.path)
    ) throw fail(`release.files.${disk}.path`);
    if (!Number.isInteger(file.mode) || file.mode < 0 || file.mode > 0o777) {
      throw fail(`release.files.${disk}.mode`);
    }
    paths.add(file.path);
  }
  const entry = r.kind === "bundle" ? ["deno", "vat.js"] : ["vat"];
  for (const path of entry) {
    if (!paths.has(path)) throw fail(`release.files (no ${path})`);
  }
}

function _checkShape(m: VersionManifest, what: string): void {
  checkManifestFields(
    m,
    (field, why) =>
      new IntegrityError(`${what}: manifest field ${field || "(the manifest)"} is invalid: ${why}`),
  );
}
