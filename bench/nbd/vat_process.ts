/**
 * The vat under test, run as its own processes (`deno run -A main.ts ...`) with the
 * Deno binary itself, so the pid is vat's and not a wrapper's.
 *
 * @module
 */

import { V8_FLAGS } from "../../vat/v8_flags.ts";
import { runCommand, type ServerProcess, startServer } from "./processes.ts";

/** A repository published for the benchmark, under a directory an HTTP server serves. */
export interface PublishedRepo {
  /** The repository directory. */
  repo: string;
  /** The directory `vat serve` serves: `repo/` and `disk.raw`. */
  www: string;
  /** The raw image, inside `www` (for nbdkit's curl plugin). */
  rawInWww: string;
  publishSeconds: number;
  /** The chunk objects' total size (compressed). */
  storedChunkBytes: number;
}

/** Runs vat's CLIs from `main` (a `main.ts`). */
export class VatProcess {
  readonly main: string;
  /** Extra `deno run` flags, e.g. `--inspect=127.0.0.1:0`. */
  readonly denoFlags: string[];

  constructor(main: string, denoFlags: string[] = []) {
    this.main = main;
    this.denoFlags = denoFlags;
  }

  /** Runs a vat command to completion. */
  run(args: string[]) {
    return runCommand(Deno.execPath(), ["run", "-A", this.main, ...args]);
  }

  /** Starts a long-running vat command, ready once its output matches `ready`. */
  start(name: string, args: string[], ready: RegExp): Promise<ServerProcess> {
    return startServer(
      name,
      Deno.execPath(),
      ["run", "-A", ...this.#v8Flags(), ...this.denoFlags, this.main, ...args],
      { line: ready },
    );
  }

  /** vat's own V8 flags (as `deno task start` runs it), unless `denoFlags` sets some. */
  #v8Flags(): string[] {
    return this.denoFlags.some((f) => f.startsWith("--v8-flags")) ? [] : [`--v8-flags=${V8_FLAGS}`];
  }

  /** Starts `vat nbd` on `repo` (a directory or URL) and waits until it serves. */
  startNbd(repo: string, socket: string, cacheDir: string, cacheBytes: number) {
    return this.start("vat nbd", [
      "nbd",
      repo,
      "--socket",
      socket,
      "--cache",
      cacheDir,
      "--cache-size",
      String(cacheBytes),
      "--retry-for",
      "10",
    ], /^serving the /m);
  }

  /** Publishes `image` as version 1 of a new repository at `work`/www/repo. */
  async publish(work: string, image: string): Promise<PublishedRepo> {
    const www = `${work}/www`;
    const repo = `${www}/repo`;
    await Deno.mkdir(www, { recursive: true });
    await this.run(["keygen", "--out", `${work}/key`]);
    await this.run(["repo", "init", repo, "--kind", "appliance"]);
    const { elapsedMs } = await this.run([
      "publish",
      repo,
      "--image",
      image,
      "--key",
      `${work}/key`,
      "--quiet",
    ]);
    const rawInWww = `${www}/disk.raw`;
    try {
      await Deno.link(image, rawInWww);
    } catch {
      await Deno.copyFile(image, rawInWww); // another file system
    }
    let storedChunkBytes = 0;
    for await (const size of _fileSizes(`${repo}/chunks`)) storedChunkBytes += size;
    return { repo, www, rawInWww, publishSeconds: elapsedMs / 1000, storedChunkBytes };
  }
}

async function* _fileSizes(dir: string): AsyncGenerator<number> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) yield* _fileSizes(path);
    else if (entry.isFile) yield (await Deno.stat(path)).size;
  }
}
