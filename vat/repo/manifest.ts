/**
 * Version manifests (docs/FORMAT.md, "Versions"). The committed object
 * `versions/N/manifest.json` is a signed envelope (`signed_envelope.ts`) whose
 * signatures cover `SIGNING_CONTEXT` followed by the payload.
 *
 * @module
 */

import { IntegrityError } from "../errors.ts";
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
}

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

/** Serializes and signs a manifest into the bytes of its committed object. */
export function signManifest(manifest: VersionManifest, key: SigningKey): Uint8Array {
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

function _checkShape(m: VersionManifest, what: string): void {
  const fail = (field: string) => new IntegrityError(`${what}: manifest field ${field} is invalid`);
  if (typeof m.vm !== "object" || m.vm === null) throw fail("vm");
  if (!(Number.isInteger(m.vm.memoryMiB) && m.vm.memoryMiB > 0)) throw fail("vm.memoryMiB");
  if (!(Number.isInteger(m.vm.cpus) && m.vm.cpus > 0)) throw fail("vm.cpus");
  if (typeof m.disks !== "object" || m.disks === null) throw fail("disks");
  for (const [name, disk] of Object.entries(m.disks)) {
    if (!/^[a-z][a-z0-9-]{0,31}$/.test(name)) throw fail(`disks name "${name}"`);
    if (
      !Number.isSafeInteger(disk?.sizeBytes) || disk.sizeBytes < 0 ||
      typeof disk.index?.key !== "string" || !/^[0-9a-f]{64}$/.test(disk.index.sha256)
    ) throw fail(`disks.${name}`);
    if (!disk.index.key.startsWith(`versions/${m.version}/`)) throw fail(`disks.${name}.index`);
    try {
      checkKey(disk.index.key);
    } catch {
      throw fail(`disks.${name}.index`);
    }
  }
  for (const file of [m.vm.kernel, m.vm.initrd]) {
    if (file !== undefined && !(file in m.disks)) throw fail(`vm boot file ${file}`);
  }
}
