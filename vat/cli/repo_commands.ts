/**
 * `vat repo ...`: the administrator's verbs that create, list, check and clean a
 * repository.
 *
 * @module
 */

import {
  describeKey,
  keyFingerprint,
  loadSigningKey,
  readPublicKeyId,
} from "../auth/signing_key.ts";
import { UsageError } from "../errors.ts";
import { formatBytes, parseSize, terminalProgress } from "../progress.ts";
import { collectGarbage } from "../repo/gc.ts";
import { openStore } from "../repo/open_store.ts";
import {
  DEFAULT_CHUNK_BYTES,
  DEFAULT_RELEASE_CHUNK_BYTES,
  REPO_KINDS,
  type RepoKind,
} from "../repo/repo_config.ts";
import { Repository } from "../repo/repository.ts";
import { appendKeyList, type KeyPins, newestKeyList } from "../repo/key_list.ts";
import { DEFAULT_FRESHNESS_MS, writeFreshness } from "../repo/freshness.ts";
import type { Store } from "../repo/store.ts";
import { type VerifyReport, verifyRepository } from "../repo/verify.ts";
import { loadUserKey } from "../auth/user_key.ts";
import { DataRepository } from "../backup/data_repository.ts";
import {
  parseCount,
  parseDuration,
  parseFlags,
  parseRepoRef,
  printJson,
  s3Options,
  STORE_FLAGS,
} from "./args.ts";
import type { Command } from "./command.ts";

async function withStore<T>(
  location: string,
  values: Record<string, unknown> & { key?: string },
  fn: (store: Store) => Promise<T>,
): Promise<T> {
  const signingKey = values.key ? await loadSigningKey(values.key) : undefined;
  const store = await openStore(location, { signingKey, s3: s3Options(values) });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

const keyFlag = { key: { type: "string" as const }, ...STORE_FLAGS };

export const repoInitCommand: Command = {
  name: "repo init",
  summary: "create a repository",
  usage: `vat repo init REPO --kind appliance|data|release [--chunk-size SIZE]
              [--publisher KEY.pub ...] [--key KEY] [--json]

REPO is a directory, http(s)://HOST/PATH served by vat serve, or s3://BUCKET/PREFIX
(endpoint and credentials from --s3-* flags or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION). The chunk size is a power of two from 4K to 16M
(default ${DEFAULT_CHUNK_BYTES / 1024}K; ${
    DEFAULT_RELEASE_CHUNK_BYTES / 1024
  }K for releases, docs/UPDATE.md). Without --publisher, the first key that
publishes becomes the publisher. --key signs the request to vat serve.
A data repository (--kind data) belongs to one user: give their key with --user-key FILE
(the daemon also makes one by itself on first use of vat --data-repo).`,
  async run(args) {
    const { values, positionals } = parseFlags("repo init", args, {
      kind: { type: "string" },
      "chunk-size": { type: "string" },
      publisher: { type: "string", multiple: true },
      json: { type: "boolean" },
      "user-key": { type: "string" },
      ...keyFlag,
    });
    if (positionals.length !== 1) throw new UsageError("repo init: give exactly one REPO");
    const kind = values.kind as RepoKind;
    if (kind === "directory") {
      throw new UsageError("repo init: make a directory with: vat directory init DIR --key KEY");
    }
    if (!REPO_KINDS.includes(kind)) {
      throw new UsageError(`repo init: --kind must be one of ${REPO_KINDS.join(", ")}`);
    }
    if ((kind === "data") !== (values["user-key"] !== undefined)) {
      throw new UsageError(
        kind === "data"
          ? "repo init: a data repository needs its user's key: --user-key FILE (vat keygen --user)"
          : "repo init: --user-key is for data repositories (--kind data)",
      );
    }
    if (kind === "data") {
      const userKey = await loadUserKey(values["user-key"]!);
      return await withStore(positionals[0], values, async (store) => {
        const data = await DataRepository.open(store, userKey, { create: true });
        if (values.json) printJson(data.root.config);
        else console.log(`data repository ${data.root.config.id} at ${store.location}`);
        return 0;
      });
    }
    const chunkSizeBytes = values["chunk-size"]
      ? parseSize(values["chunk-size"], "--chunk-size")
      : kind === "release"
      ? DEFAULT_RELEASE_CHUNK_BYTES
      : DEFAULT_CHUNK_BYTES;
    const publisherKeys = await Promise.all((values.publisher ?? []).map(readPublicKeyId));
    return await withStore(positionals[0], values, async (store) => {
      if (positionals[0].startsWith("s3://")) {
        // A bucket that honours no conditional create would let two publishers
        // commit the same version: refuse it before it holds a repository.
        const { ensureBucket, parseS3Url, probeConditionalCreate } = await import(
          "../repo/store_s3.ts"
        );
        await ensureBucket(parseS3Url(positionals[0], s3Options(values)));
        await probeConditionalCreate(store);
      }
      const repo = await Repository.init(store, { kind, chunkSizeBytes, publisherKeys });
      if (values.json) printJson(repo.config);
      else {
        console.log(
          `created ${kind} repository ${repo.config.id} at ${store.location} ` +
            `(chunk size ${formatBytes(chunkSizeBytes)})`,
        );
      }
      return 0;
    });
  },
};

/** The repository's publisher keys now: its newest signed key list, or repo.json's. */
async function currentKeys(repo: Repository): Promise<KeyPins> {
  return (await newestKeyList(repo.store, repo.config.id)) ??
    { sequence: 0, keys: [...repo.config.publisherKeys], retired: [] };
}

/** Signs key list N+1 = `keys` with `--key` and mirrors it into repo.json. */
async function changeKeys(
  repo: Repository,
  current: KeyPins,
  keys: string[],
  keyPath: string | undefined,
): Promise<KeyPins> {
  if (!keyPath) {
    throw new UsageError(
      "give --key KEY: a current publisher key signs the new key list (VATs accept no other)",
    );
  }
  const signer = await loadSigningKey(keyPath);
  const latest = (await repo.latestVersion()) ?? 0;
  const list = await appendKeyList(repo.store, repo.config.id, current, keys, signer, latest);
  await repo.setPublisherKeys(list.publisherKeys);
  return await currentKeys(repo);
}

function printKeys(location: string, pins: KeyPins): void {
  console.log(
    `publisher keys of ${location} (${
      pins.sequence ? `key list ${pins.sequence}` : "repo.json, no signed key list yet"
    }):`,
  );
  for (const k of pins.keys) console.log(`  ${k}  ${keyFingerprint(k)}`);
}

export const repoAddKeyCommand: Command = {
  name: "repo add-key",
  summary: "let another publisher key sign versions (signed by a current one)",
  usage: `vat repo add-key REPO PUBKEY --key KEY [--json]

PUBKEY is a KEY.pub file or an "ed25519:..." id. KEY, a current publisher's private
key, signs the next key list (keys/N.json), the only way a VAT that pinned the
repository's keys learns of a new one; it also signs the request to vat serve.
A repository with no publisher key yet takes PUBKEY without a signature.`,
  async run(args) {
    const { positionals, values } = parseFlags("repo add-key", args, {
      ...keyFlag,
      json: { type: "boolean" },
    });
    if (positionals.length !== 2) throw new UsageError("repo add-key: give REPO and PUBKEY");
    const id = await readPublicKeyId(positionals[1]);
    return await withStore(positionals[0], values, async (store) => {
      const repo = await Repository.open(store);
      let pins = await currentKeys(repo);
      if (pins.keys.length === 0) {
        await repo.addPublisherKey(id);
        pins = { sequence: 0, keys: [id], retired: [] };
      } else if (!pins.keys.includes(id)) {
        pins = await changeKeys(repo, pins, [...pins.keys, id], values.key);
      }
      if (values.json) printJson(pins);
      else {
        console.log(`${describeKey(id)} may now publish to ${store.location}`);
        printKeys(store.location, pins);
      }
      return 0;
    });
  },
};

export const repoRemoveKeyCommand: Command = {
  name: "repo remove-key",
  summary: "stop trusting a publisher key (a rotation; signed by a current key)",
  usage: `vat repo remove-key REPO PUBKEY --key KEY [--json]

Signs the next key list without PUBKEY (with KEY, a current publisher key, which may
be PUBKEY itself when it retires). VATs that follow the key lists refuse versions and
key lists signed by PUBKEY from then on.`,
  async run(args) {
    const { positionals, values } = parseFlags("repo remove-key", args, {
      ...keyFlag,
      json: { type: "boolean" },
    });
    if (positionals.length !== 2) throw new UsageError("repo remove-key: give REPO and PUBKEY");
    const id = await readPublicKeyId(positionals[1]);
    return await withStore(positionals[0], values, async (store) => {
      const repo = await Repository.open(store);
      let pins = await currentKeys(repo);
      if (!pins.keys.includes(id)) {
        throw new UsageError(`${describeKey(id)} is not a publisher key of ${store.location}`);
      }
      const rest = pins.keys.filter((k) => k !== id);
      if (rest.length === 0) {
        throw new UsageError(
          `${
            describeKey(id)
          } is the only publisher key of ${store.location}: add its successor first`,
        );
      }
      pins = await changeKeys(repo, pins, rest, values.key);
      if (values.json) printJson(pins);
      else {
        console.log(`${describeKey(id)} may no longer publish to ${store.location}`);
        printKeys(store.location, pins);
      }
      return 0;
    });
  },
};

export const repoKeysCommand: Command = {
  name: "repo keys",
  summary: "show a repository's publisher keys and their fingerprints",
  usage: `vat repo keys REPO [--json]`,
  async run(args) {
    const { positionals, values } = parseFlags("repo keys", args, {
      ...STORE_FLAGS,
      json: { type: "boolean" },
    });
    if (positionals.length !== 1) throw new UsageError("repo keys: give exactly one REPO");
    return await withStore(positionals[0], values, async (store) => {
      const pins = await currentKeys(await Repository.open(store));
      if (values.json) {
        printJson({
          keyList: pins.sequence,
          keys: pins.keys.map((id) => ({ id, fingerprint: keyFingerprint(id) })),
        });
      } else printKeys(store.location, pins);
      return 0;
    });
  },
};

export const repoRefreshCommand: Command = {
  name: "repo refresh",
  summary: "sign a new freshness statement (timestamp.json) for the newest version",
  usage: `vat repo refresh REPO --key KEY [--expires DURATION] [--json]

Signs, with a publisher key, that the repository's newest version is what it is now,
valid for DURATION (default 7d; e.g. 12h, 30m). Publishing does it too. A VAT that is
online but only finds an expired statement says the repository has not vouched for its
newest version since then (a frozen mirror, or a server withholding updates): run this
on a schedule shorter than DURATION.`,
  async run(args) {
    const { positionals, values } = parseFlags("repo refresh", args, {
      ...keyFlag,
      expires: { type: "string" },
      json: { type: "boolean" },
    });
    if (positionals.length !== 1) throw new UsageError("repo refresh: give exactly one REPO");
    if (!values.key) throw new UsageError("repo refresh: --key KEY is required");
    const validForMs = values.expires
      ? parseDuration(values.expires, "--expires")
      : DEFAULT_FRESHNESS_MS;
    return await withStore(positionals[0], values, async (store) => {
      const repo = await Repository.open(store);
      const key = await loadSigningKey(values.key!);
      const { keys } = await currentKeys(repo);
      if (!keys.includes(key.publicKeyId)) {
        throw new UsageError(
          `${describeKey(key.publicKeyId)} is not a publisher key of ${store.location}; ` +
            `VATs would refuse its statement`,
        );
      }
      const statement = await writeFreshness(repo, key, { validForMs });
      if (values.json) printJson(statement);
      else {
        console.log(
          `${store.location} vouches for version ${statement.latest} until ${statement.expires}`,
        );
      }
      return 0;
    });
  },
};

export const repoLsCommand: Command = {
  name: "repo ls",
  summary: "list a repository's versions",
  usage: `vat repo ls REPO [--json]`,
  async run(args) {
    const { values, positionals } = parseFlags("repo ls", args, {
      ...STORE_FLAGS,
      json: { type: "boolean" },
    });
    if (positionals.length !== 1) throw new UsageError("repo ls: give exactly one REPO");
    return await withStore(positionals[0], values, async (store) => {
      const repo = await Repository.open(store);
      const rows = [];
      for (const n of await repo.listVersions()) {
        const { manifest } = await repo.readVersion(n);
        rows.push({
          version: n,
          createdAt: manifest.createdAt,
          parent: manifest.parent,
          publisher: manifest.publisher,
          disks: Object.fromEntries(
            Object.entries(manifest.disks).map(([name, d]) => [name, d.sizeBytes]),
          ),
          newStoredBytes: Object.values(manifest.disks).reduce((s, d) => s + d.newStoredBytes, 0),
          updateRequired: manifest.updateRequired ?? false,
          note: manifest.note ?? null,
        });
      }
      if (values.json) {
        printJson({ repository: repo.config.id, kind: repo.config.kind, versions: rows });
        return 0;
      }
      if (rows.length === 0) console.log(`${store.location} has no versions yet`);
      for (const r of rows) {
        const disks = Object.entries(r.disks).map(([n, s]) => `${n} ${formatBytes(s)}`).join(", ");
        console.log(
          `${String(r.version).padStart(4)}  ${r.createdAt}  ${disks}  +${
            formatBytes(r.newStoredBytes)
          }` +
            (r.updateRequired ? "  update required" : "") + (r.note ? `  ${r.note}` : ""),
        );
      }
      return 0;
    });
  },
};

export const repoShowCommand: Command = {
  name: "repo show",
  summary: "show one version's manifest",
  usage: `vat repo show REPO[@N] [--json]`,
  async run(args) {
    const { values, positionals } = parseFlags("repo show", args, {
      ...STORE_FLAGS,
      json: { type: "boolean" },
    });
    if (positionals.length !== 1) throw new UsageError("repo show: give exactly one REPO[@N]");
    const ref = parseRepoRef(positionals[0]);
    return await withStore(ref.repo, values, async (store) => {
      const repo = await Repository.open(store);
      const { number, manifest } = await repo.resolveVersion(ref.version);
      if (values.json) {
        printJson(manifest);
        return 0;
      }
      console.log(`version ${number} of ${store.location} (repository ${repo.config.id})`);
      console.log(`  published ${manifest.createdAt} by ${manifest.publisher}`);
      console.log(`  parent    ${manifest.parent ?? "none"}`);
      console.log(
        `  vm        ${manifest.vm.cpus} CPU, ${manifest.vm.memoryMiB} MiB` +
          (manifest.vm.kernel
            ? `, kernel boot (append: ${manifest.vm.append ?? ""})`
            : ", disk boot") +
          (manifest.vm.ephemeralSizeBytes
            ? `, ephemeral ${formatBytes(manifest.vm.ephemeralSizeBytes)}`
            : ""),
      );
      for (const [name, d] of Object.entries(manifest.disks)) {
        console.log(
          `  ${name.padEnd(9)} ${formatBytes(d.sizeBytes)}, ${d.dataChunks} data chunks of ` +
            `${formatBytes(d.chunkBytes)}, ${formatBytes(d.newStoredBytes)} new in this version`,
        );
      }
      if (manifest.updateRequired) console.log("  update required: older versions may not start");
      if (manifest.note) console.log(`  note      ${manifest.note}`);
      return 0;
    });
  },
};

export const repoVerifyCommand: Command = {
  name: "repo verify",
  summary: "check signatures, indexes and chunks",
  usage: `vat repo verify REPO [--all] [--user-key FILE] [--json] [--quiet]

Checks every version's signature and disk indexes and that every chunk they name
exists; --all also reads every chunk and checks its hash. Exits 1 if anything is wrong.
A data repository is checked with its user's key (--user-key), every subscription in
it; --all then also decrypts every chunk.`,
  async run(args) {
    const { values, positionals } = parseFlags("repo verify", args, {
      ...STORE_FLAGS,
      all: { type: "boolean" },
      json: { type: "boolean" },
      quiet: { type: "boolean" },
      "user-key": { type: "string" },
    });
    if (positionals.length !== 1) throw new UsageError("repo verify: give exactly one REPO");
    return await withStore(positionals[0], values, async (store) => {
      const progress = terminalProgress({ quiet: values.quiet || values.json });
      let repos: [string, Repository][];
      if (values["user-key"]) {
        const data = await DataRepository.open(store, await loadUserKey(values["user-key"]));
        repos = (await data.listSubscriptions()).map((name) => [name, data.subscription(name)]);
      } else {
        const repo = await Repository.open(store);
        if (repo.config.kind === "data") {
          throw new UsageError(
            `${store.location} is a data repository: its content is encrypted; give --user-key FILE`,
          );
        }
        repos = [["", repo]];
      }
      const report: VerifyReport = { versions: [], chunks: 0, chunksRead: 0, problems: [] };
      try {
        for (const [name, repo] of repos) {
          const one = await verifyRepository(repo, {
            all: values.all,
            onProgress: progress.listener,
          });
          const prefix = name ? `subscription ${name}: ` : "";
          report.versions.push(...one.versions);
          report.chunks += one.chunks;
          report.chunksRead += one.chunksRead;
          report.problems.push(...one.problems.map((p) => prefix + p));
        }
      } finally {
        progress.done();
      }
      if (values.json) printJson({ ok: report.problems.length === 0, ...report });
      else {
        for (const p of report.problems) console.error(`problem: ${p}`);
        console.log(
          `${report.problems.length === 0 ? "ok" : `${report.problems.length} problems`}: ` +
            `${report.versions.length} versions, ${report.chunks} chunks` +
            (values.all ? `, ${report.chunksRead} read and hash-checked` : " present"),
        );
      }
      return report.problems.length === 0 ? 0 : 1;
    });
  },
};

export const repoGcCommand: Command = {
  name: "repo gc",
  summary: "delete old versions and reclaim unreferenced chunks",
  usage: `vat repo gc REPO --keep N [--dry-run] [--key KEY] [--json]

Keeps the newest N versions and deletes the chunks no remaining version references.
Safe while publishers run: it takes no lock; while a publish is in progress it deletes
the old versions but leaves the chunk sweep to a later run.`,
  async run(args) {
    const { values, positionals } = parseFlags("repo gc", args, {
      keep: { type: "string" },
      "dry-run": { type: "boolean" },
      json: { type: "boolean" },
      ...keyFlag,
    });
    if (positionals.length !== 1) throw new UsageError("repo gc: give exactly one REPO");
    if (!values.keep) throw new UsageError("repo gc: --keep N is required");
    const keep = parseCount(values.keep, "--keep");
    return await withStore(positionals[0], values, async (store) => {
      const repo = await Repository.open(store);
      const report = await collectGarbage(repo, { keep, dryRun: values["dry-run"] });
      if (values.json) printJson(report);
      else {
        const verb = values["dry-run"] ? "would delete" : "deleted";
        console.log(
          `${verb} ${report.deletedVersions.length} versions` +
            (report.deletedVersions.length ? ` (${report.deletedVersions.join(", ")})` : "") +
            `, ${verb} ${report.deletedChunks} chunks (${formatBytes(report.reclaimedBytes)}); ` +
            `kept versions ${
              report.keptVersions.join(", ") || "none"
            } with ${report.keptChunks} chunks`,
        );
        if (report.sweepPostponed) {
          console.log("a publish is in progress: unreferenced chunks are left for the next gc run");
        }
        if (report.temporaryFiles) {
          console.log(`removed ${report.temporaryFiles} temporary files of killed writes`);
        }
      }
      return 0;
    });
  },
};
