/**
 * `publishRelease`: vat's own files become the next version of a release repository
 * (docs/UPDATE.md, "Releases"). Each file is one disk of the version, so consecutive
 * releases share every chunk of the files that did not change (the Deno runtime) and
 * most chunks of those that did (the bundle, laid out so that a change moves nothing
 * after it: `alignBundleModules`).
 *
 * @module
 */

import { ASSET_ROOT } from "../assets.ts";
import type { SigningKey } from "../auth/signing_key.ts";
import { PermanentError, UsageError, VatError } from "../errors.ts";
import type { ProgressListener } from "../progress.ts";
import type { ReleaseRecord } from "../repo/manifest.ts";
import {
  type DiskSource,
  fileDiskSource,
  publishDisks,
  type PublishResult,
} from "../repo/publish.ts";
import type { Repository } from "../repo/repository.ts";
import { buildUi, UI_FILES } from "../ui/build_ui.ts";
import { checkVatVersion, readSourceVersion } from "./vat_version.ts";

/** What a release is made of. */
export type ReleaseInput =
  /** vat's sources bundled into `vat.js`, shipped with the Deno runtime that runs them. */
  | { kind: "bundle"; sourceRoot?: URL; runtime?: string }
  /** A single executable of `deno compile` (`dist/vat`). */
  | { kind: "binary"; binary: string };

/** How to publish a release. */
export interface ReleasePublishOptions {
  key: SigningKey;
  note?: string;
  /** VATs running an older vat must not install this release. */
  minFrom?: string;
  onProgress?: ProgressListener;
  log?: (line: string) => void;
}

/** What a release publish did. */
export interface ReleasePublishResult extends PublishResult {
  vatVersion: string;
  kind: "bundle" | "binary";
  files: { path: string; sizeBytes: number }[];
}

/** One file of a release as built: where it is now, where it goes in a slot. */
interface _ReleaseFile {
  disk: string;
  source: string;
  path: string;
  mode: number;
}

/** Builds (for a bundle) and publishes a release as the next version of `repo`. */
export async function publishRelease(
  repo: Repository,
  input: ReleaseInput,
  options: ReleasePublishOptions,
): Promise<ReleasePublishResult> {
  if (repo.config.kind !== "release") {
    throw new UsageError(
      `${repo.store.location} is a repository of kind ${repo.config.kind}; releases go to one made ` +
        `with: vat repo init REPO --kind release`,
    );
  }
  if (options.minFrom) checkVatVersion(options.minFrom, "--min-from");
  const work = await Deno.makeTempDir({ prefix: "vat-release-" });
  try {
    let vatVersion: string;
    let files: _ReleaseFile[];
    if (input.kind === "binary") {
      vatVersion = await _versionOfBinary(input.binary);
      files = [{ disk: "vat", source: input.binary, path: "vat", mode: 0o755 }];
    } else {
      const root = input.sourceRoot ?? ASSET_ROOT;
      vatVersion = await readSourceVersion(root);
      files = await _buildBundle(root, work, repo.config.chunkSizeBytes, options.log);
      files.push({
        disk: "runtime",
        source: input.runtime ?? Deno.execPath(),
        path: "deno",
        mode: 0o755,
      });
      await _checkBundleRuns(files, vatVersion);
    }
    const release: ReleaseRecord = {
      vatVersion,
      kind: input.kind,
      files: Object.fromEntries(files.map((f) => [f.disk, { path: f.path, mode: f.mode }])),
    };
    if (options.minFrom) release.minFrom = options.minFrom;
    const opened: Deno.FsFile[] = [];
    try {
      const sources: [string, DiskSource][] = [];
      const sizes: { path: string; sizeBytes: number }[] = [];
      for (const file of files) {
        const handle = await Deno.open(file.source, { read: true });
        opened.push(handle);
        const { size } = await handle.stat();
        sources.push([file.disk, fileDiskSource(handle, size)]);
        sizes.push({ path: file.path, sizeBytes: size });
      }
      const result = await publishDisks(repo, sources, { memoryMiB: 1, cpus: 1 }, {
        key: options.key,
        onProgress: options.onProgress,
        note: options.note,
        release,
      });
      return { ...result, vatVersion, kind: input.kind, files: sizes };
    } finally {
      for (const handle of opened) handle.close();
    }
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/**
 * Pads each module of an esbuild bundle (each starts at a line `// path/of/module.ts`)
 * with spaces up to a multiple of `alignBytes`, so every module starts at a chunk
 * boundary: a change to one module then changes only its own chunks, where without
 * this every chunk after the change would move (docs/UPDATE.md measures both). The
 * spaces go between top-level statements, where JavaScript ignores them.
 */
export function alignBundleModules(bundle: string, alignBytes: number): Uint8Array {
  const encoder = new TextEncoder();
  const parts = bundle.split(/^(?=\/\/ [^\n]*\.(?:ts|tsx|js|mjs|cjs)\n)/m);
  const pieces: Uint8Array[] = [];
  let length = 0;
  for (const part of parts) {
    const bytes = encoder.encode(part);
    pieces.push(bytes);
    length += bytes.length;
    const over = length % alignBytes;
    if (over !== 0) {
      const pad = new Uint8Array(alignBytes - over).fill(0x20);
      pad[pad.length - 1] = 0x0a;
      pieces.push(pad);
      length += pad.length;
    }
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}

async function _buildBundle(
  root: URL,
  work: string,
  alignBytes: number,
  log?: (line: string) => void,
): Promise<_ReleaseFile[]> {
  const main = new URL("main.ts", root).pathname;
  try {
    await Deno.stat(main);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new UsageError(
        `${main} does not exist: --bundle builds from vat's source tree (give it with --source DIR)`,
        { cause: err },
      );
    }
    throw err;
  }
  log?.(`building the UI and bundling ${main}`);
  await buildUi(root);
  const raw = `${work}/vat.raw.js`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform", "deno", "--output", raw, main],
    cwd: root.pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new VatError(
      `deno bundle ${main} failed:\n${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  await Deno.writeFile(
    `${work}/vat.js`,
    alignBundleModules(await Deno.readTextFile(raw), alignBytes),
  );
  const at = (path: string) => new URL(path, root).pathname;
  return [
    { disk: "vat", source: `${work}/vat.js`, path: "vat.js", mode: 0o644 },
    {
      disk: "ui-js",
      source: at(`dist/ui/${UI_FILES.js}`),
      path: `dist/ui/${UI_FILES.js}`,
      mode: 0o644,
    },
    {
      disk: "ui-css",
      source: at(`dist/ui/${UI_FILES.css}`),
      path: `dist/ui/${UI_FILES.css}`,
      mode: 0o644,
    },
    {
      disk: "demo-init",
      source: at("vat/demo/busybox_appliance_init"),
      path: "vat/demo/busybox_appliance_init",
      mode: 0o755,
    },
  ];
}

/** The bundle must start under its runtime and say its version before it is published. */
async function _checkBundleRuns(files: _ReleaseFile[], vatVersion: string): Promise<void> {
  const runtime = files.find((f) => f.path === "deno")!.source;
  const bundle = files.find((f) => f.path === "vat.js")!.source;
  const out = await new Deno.Command(runtime, {
    args: ["run", "-A", "--no-config", bundle, "--version"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const said = new TextDecoder().decode(out.stdout).trim();
  if (!out.success || said !== `vat ${vatVersion}`) {
    throw new PermanentError(
      `the bundle does not run (it said "${said}", expected "vat ${vatVersion}"): ` +
        new TextDecoder().decode(out.stderr).trim(),
    );
  }
}

/** A binary's version, from `BINARY --version` ("vat 1.2.3"). */
async function _versionOfBinary(binary: string): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(binary, {
      args: ["--version"],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.PermissionDenied) {
      throw new UsageError(`--binary ${binary} cannot be run: ${(err as Error).message}`, {
        cause: err,
      });
    }
    throw err;
  }
  const said = new TextDecoder().decode(out.stdout).trim().split("\n")[0].slice(0, 200);
  const m = /^vat (\S+)$/.exec(said);
  if (!out.success || !m) {
    throw new UsageError(
      `--binary ${binary} is not a vat: "${binary} --version" printed "${said}", not "vat X.Y.Z"`,
    );
  }
  return checkVatVersion(m[1], `the version of ${binary}`);
}
