import { loadSigningKey } from "../auth/signing_key.ts";
import { UsageError } from "../errors.ts";
import { recordBootTrace } from "../appliance/trace_record.ts";
import { formatBytes } from "../progress.ts";
import { writeBootTrace } from "../repo/boot_trace.ts";
import { openStore } from "../repo/open_store.ts";
import { Repository } from "../repo/repository.ts";
import { parseCount, parseFlags, parseRepoRef, printJson, s3Options, STORE_FLAGS } from "./args.ts";
import type { Command } from "./command.ts";

export const traceRecordCommand: Command = {
  name: "trace record",
  summary: "record and publish a version's boot trace (the chunks it reads while booting)",
  usage: `vat trace record REPO[@N] --key KEY [--until LINE] [--timeout SECONDS] [--json]

Boots version N (default: the newest) in QEMU from an empty scratch cache, as a VAT
would, until its serial console shows a line containing LINE or SECONDS pass
(default 120), and records the chunks it reads, in order. The trace is signed with KEY
(a publisher of REPO) and stored as versions/N/trace.json; recording again adds the
boot to the trace's access profile. VATs starting version N fetch the trace's chunks
ahead of the guest, and prefetch the profile's chunks first.`,
  async run(args) {
    const { values, positionals } = parseFlags("trace record", args, {
      ...STORE_FLAGS,
      key: { type: "string" },
      until: { type: "string" },
      timeout: { type: "string" },
      json: { type: "boolean" },
    });
    if (positionals.length !== 1) throw new UsageError("trace record: give one REPO[@N]");
    if (!values.key) throw new UsageError("trace record: --key KEY is required");
    const timeoutMs = 1000 * (values.timeout ? parseCount(values.timeout, "--timeout") : 120);
    const key = await loadSigningKey(values.key);
    const ref = parseRepoRef(positionals[0]);
    const store = await openStore(ref.repo, { signingKey: key, s3: s3Options(values) });
    try {
      const repo = await Repository.open(store);
      repo.checkPublisher(key.publicKeyId);
      const version = await repo.resolveVersion(ref.version);
      const until = values.until ?? null;
      const boot = await recordBootTrace({ repo, version, until, timeoutMs });
      if (until !== null && !boot.reachedLine) {
        throw new UsageError(
          `trace record: version ${version.number} did not print "${until}" within ` +
            `${timeoutMs / 1000} s; nothing was stored (raise --timeout, or check the line)`,
        );
      }
      const trace = await writeBootTrace(repo, version, boot.recording, key, until);
      const result = {
        version: version.number,
        chunks: boot.recording.order.length,
        bytes: boot.bytes,
        seconds: Math.round(boot.elapsedMs / 100) / 10,
        runs: trace.runs,
      };
      if (values.json) printJson(result);
      else {
        console.log(
          `version ${version.number}: recorded ${result.chunks} chunks (${
            formatBytes(boot.bytes)
          }) ` +
            `read in ${result.seconds} s${until === null ? "" : ` until "${until}"`}; ` +
            `its trace adds up ${trace.runs} boot${trace.runs === 1 ? "" : "s"}`,
        );
      }
      return 0;
    } finally {
      await store.close();
    }
  },
};
