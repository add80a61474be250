/**
 * `vat release publish` and `vat release ls`: vat's own releases (docs/UPDATE.md).
 *
 * @module
 */

import { loadSigningKey } from "../auth/signing_key.ts";
import { UsageError } from "../errors.ts";
import { formatBytes, terminalProgress } from "../progress.ts";
import { openStore } from "../repo/open_store.ts";
import { Repository } from "../repo/repository.ts";
import { publishRelease } from "../update/release_publish.ts";
import { parseFlags, printJson, s3Options, STORE_FLAGS } from "./args.ts";
import type { Command } from "./command.ts";

export const releasePublishCommand: Command = {
  name: "release publish",
  summary: "publish vat itself as the next release of a release repository",
  usage: `vat release publish REPO --key KEY [--bundle [--source DIR] | --binary FILE]
              [--note TEXT] [--min-from VERSION] [--quiet] [--json]

Publishes a release of vat to REPO (made with vat repo init REPO --kind release).
--bundle (the default) bundles vat's sources (--source DIR, default the tree this vat
runs from) with deno bundle into vat.js, laid out so that consecutive releases share
chunks, and ships it with the Deno runtime running this command, the built UI and the
demo's init script. --binary FILE publishes a single executable of deno task compile.
The release carries the vat version of what it packs (vat/cli/version.ts, or
FILE --version). --min-from VERSION: VATs older than VERSION refuse to update to it.`,
  async run(args) {
    const { values, positionals } = parseFlags("release publish", args, {
      key: { type: "string" },
      bundle: { type: "boolean" },
      binary: { type: "string" },
      source: { type: "string" },
      note: { type: "string" },
      "min-from": { type: "string" },
      quiet: { type: "boolean" },
      json: { type: "boolean" },
      ...STORE_FLAGS,
    });
    if (positionals.length !== 1) throw new UsageError("release publish: give exactly one REPO");
    if (!values.key) {
      throw new UsageError(
        "release publish: --key KEY is required (make one: vat keygen --out KEY)",
      );
    }
    if (values.bundle && values.binary) {
      throw new UsageError("release publish: choose --bundle or --binary FILE, not both");
    }
    if (values.binary && values.source) {
      throw new UsageError("release publish: --source goes with --bundle");
    }
    const key = await loadSigningKey(values.key);
    const store = await openStore(positionals[0], { signingKey: key, s3: s3Options(values) });
    try {
      const repo = await Repository.open(store);
      const progress = terminalProgress({ quiet: values.quiet || values.json });
      let result;
      try {
        result = await publishRelease(
          repo,
          values.binary ? { kind: "binary", binary: values.binary } : {
            kind: "bundle",
            sourceRoot: values.source
              ? new URL(`file://${await Deno.realPath(values.source)}/`)
              : undefined,
          },
          {
            key,
            note: values.note,
            minFrom: values["min-from"],
            onProgress: progress.listener,
            log: values.quiet || values.json ? undefined : (line) => console.error(line),
          },
        );
      } finally {
        progress.done();
      }
      if (values.json) {
        printJson(result);
      } else {
        const size = result.files.reduce((sum, f) => sum + f.sizeBytes, 0);
        console.log(
          `published release ${result.version} of ${store.location}: vat ${result.vatVersion} ` +
            `(${result.kind}, ${result.files.length} files, ${formatBytes(size)}), ` +
            `${result.newChunks} new chunks (${formatBytes(result.newStoredBytes)} uploaded)`,
        );
      }
      return 0;
    } finally {
      await store.close();
    }
  },
};

export const releaseLsCommand: Command = {
  name: "release ls",
  summary: "list the releases of a release repository",
  usage: `vat release ls REPO [--json]

Lists every release: its number, vat version, kind, size, what it added, date and note.`,
  async run(args) {
    const { values, positionals } = parseFlags("release ls", args, {
      json: { type: "boolean" },
      ...STORE_FLAGS,
    });
    if (positionals.length !== 1) throw new UsageError("release ls: give exactly one REPO");
    const store = await openStore(positionals[0], { s3: s3Options(values) });
    try {
      const repo = await Repository.open(store);
      if (repo.config.kind !== "release") {
        throw new UsageError(
          `${store.location} is a repository of kind ${repo.config.kind}, not a release repository`,
        );
      }
      const rows = [];
      for (const n of await repo.listVersions()) {
        const { manifest } = await repo.readVersion(n);
        const files = Object.entries(manifest.release?.files ?? {});
        rows.push({
          release: n,
          vatVersion: manifest.release?.vatVersion ?? null,
          kind: manifest.release?.kind ?? null,
          minFrom: manifest.release?.minFrom ?? null,
          files: files.map(([disk, f]) => ({
            path: f.path,
            sizeBytes: manifest.disks[disk].sizeBytes,
          })),
          sizeBytes: files.reduce((sum, [disk]) => sum + manifest.disks[disk].sizeBytes, 0),
          newStoredBytes: Object.values(manifest.disks).reduce((s, d) => s + d.newStoredBytes, 0),
          createdAt: manifest.createdAt,
          publisher: manifest.publisher,
          note: manifest.note ?? null,
        });
      }
      if (values.json) {
        printJson(rows);
        return 0;
      }
      if (rows.length === 0) console.log(`${store.location} holds no release yet`);
      for (const r of rows) {
        console.log(
          `${String(r.release).padStart(4)}  vat ${(r.vatVersion ?? "?").padEnd(10)} ` +
            `${(r.kind ?? "?").padEnd(6)} ${formatBytes(r.sizeBytes).padStart(10)}  ` +
            `+${formatBytes(r.newStoredBytes)}  ${r.createdAt}` +
            (r.minFrom ? `  from ${r.minFrom}` : "") + (r.note ? `  ${r.note}` : ""),
        );
      }
      return 0;
    } finally {
      await store.close();
    }
  },
};
