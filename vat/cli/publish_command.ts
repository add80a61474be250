import { loadSigningKey } from "../auth/signing_key.ts";
import { PermanentError, UsageError } from "../errors.ts";
import { recordBootTrace } from "../appliance/trace_record.ts";
import { writeBootTrace } from "../repo/boot_trace.ts";
import { formatBytes, parseSize, terminalProgress } from "../progress.ts";
import { openStore } from "../repo/open_store.ts";
import { publishVersion } from "../repo/publish.ts";
import { Repository } from "../repo/repository.ts";
import { parseCount, parseFlags, printJson, s3Options, STORE_FLAGS } from "./args.ts";
import type { Command } from "./command.ts";
import { publishFromDaemon } from "./appliance_commands.ts";

export const publishCommand: Command = {
  name: "publish",
  summary: "publish disk images as the next version of an appliance",
  usage: `vat publish --from NAME --key KEY [--state DIR] [--json]
vat publish REPO --image PATH --key KEY [--user-disk PATH] [--memory MiB] [--cpus N]
            [--kernel PATH [--initrd PATH] [--append ARGS]] [--ephemeral-size SIZE]
            [--update-required] [--note TEXT] [--exact] [--trace-until LINE] [--json] [--quiet]

Reads any image format qemu-img reads (raw, qcow2, vmdk, vdi, vhdx), uploads only the
chunks REPO lacks, then commits the version atomically and prints its number. Blocks
that the images' ext2/3/4 filesystems mark unused are published as zeroes (they hold
only deleted data, and would make every update bigger); --exact publishes every byte.
--trace-until LINE then boots the new version (as \`vat trace record\` does) until its
console shows LINE and publishes its boot trace.

With --from NAME, the daemon publishes the running appliance NAME's system disk (the
published base plus the guest's changes) as the next version of NAME's repository,
keeping its other disks and VM settings.`,
  async run(args) {
    const { values, positionals } = parseFlags("publish", args, {
      image: { type: "string" },
      key: { type: "string" },
      "user-disk": { type: "string" },
      memory: { type: "string" },
      cpus: { type: "string" },
      kernel: { type: "string" },
      initrd: { type: "string" },
      append: { type: "string" },
      "ephemeral-size": { type: "string" },
      "update-required": { type: "boolean" },
      note: { type: "string" },
      exact: { type: "boolean" },
      "trace-until": { type: "string" },
      json: { type: "boolean" },
      quiet: { type: "boolean" },
      ...STORE_FLAGS,
      from: { type: "string" },
      state: { type: "string" },
    });
    if (values.from) {
      if (!values.key) throw new UsageError("publish: --key KEY is required");
      if (positionals.length > 0 || values.image) {
        throw new UsageError(
          "publish: --from NAME publishes to the appliance's own repository; give no REPO or --image",
        );
      }
      return await publishFromDaemon(values.from, values.key, values.state, values.json ?? false);
    }
    if (positionals.length !== 1) throw new UsageError("publish: give exactly one REPO");
    if (!values.image) throw new UsageError("publish: --image PATH is required");
    if (!values.key) {
      throw new UsageError("publish: --key KEY is required (make one: vat keygen --out KEY)");
    }
    const key = await loadSigningKey(values.key);
    const store = await openStore(positionals[0], { signingKey: key, s3: s3Options(values) });
    try {
      const repo = await Repository.open(store);
      const progress = terminalProgress({ quiet: values.quiet || values.json });
      let result;
      try {
        result = await publishVersion(repo, {
          system: values.image,
          user: values["user-disk"],
          kernel: values.kernel,
          initrd: values.initrd,
          append: values.append,
          memoryMiB: values.memory ? parseCount(values.memory, "--memory") : undefined,
          cpus: values.cpus ? parseCount(values.cpus, "--cpus") : undefined,
          ephemeralSizeBytes: values["ephemeral-size"]
            ? parseSize(values["ephemeral-size"], "--ephemeral-size")
            : undefined,
          updateRequired: values["update-required"],
          note: values.note,
          exact: values.exact,
        }, { key, onProgress: progress.listener });
      } finally {
        progress.done();
      }
      let trace: { chunks: number; bytes: number } | undefined;
      if (values["trace-until"] !== undefined) {
        // Recorded at once, on the version just committed (docs/FORMAT.md, "Boot traces").
        const version = await repo.readVersion(result.version);
        const until = values["trace-until"];
        const boot = await recordBootTrace({ repo, version, until, timeoutMs: 120_000 });
        if (!boot.reachedLine) {
          throw new PermanentError(
            `version ${result.version} is published, but it did not print "${until}" ` +
              `within 120 s, so it has no boot trace (record one: vat trace record)`,
          );
        }
        await writeBootTrace(repo, version, boot.recording, key, until);
        trace = { chunks: boot.recording.order.length, bytes: boot.bytes };
      }
      if (values.json) {
        printJson(trace ? { ...result, trace } : result);
      } else {
        console.log(
          `published version ${result.version} of ${store.location}: ` +
            `${formatBytes(result.totalBytes)} of disk, ${result.newChunks} new chunks ` +
            `(${formatBytes(result.newStoredBytes)} uploaded) in ${
              (result.elapsedMs / 1000).toFixed(1)
            } s`,
        );
        if (trace) {
          console.log(
            `boot trace of version ${result.version}: ${trace.chunks} chunks ` +
              `(${formatBytes(trace.bytes)}) read until "${values["trace-until"]}"`,
          );
        }
      }
      return 0;
    } finally {
      await store.close();
    }
  },
};
