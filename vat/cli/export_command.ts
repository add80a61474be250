import { UsageError } from "../errors.ts";
import { terminalProgress } from "../progress.ts";
import { exportDisk } from "../repo/export.ts";
import { openStore } from "../repo/open_store.ts";
import { Repository } from "../repo/repository.ts";
import { loadUserKey } from "../auth/user_key.ts";
import { DataRepository } from "../backup/data_repository.ts";
import { parseFlags, parseRepoRef, s3Options, STORE_FLAGS } from "./args.ts";
import type { Command } from "./command.ts";

export const exportCommand: Command = {
  name: "export",
  summary: "write one disk of a version as a raw image",
  usage: `vat export REPO[@N] [--disk system|user|kernel|initrd] OUT [--quiet]
vat export DATA_REPO[@N] --user-key FILE --subscription NAME OUT [--quiet]

Writes the disk (default: system) of version N (default: the newest) to OUT as a sparse
raw image, every chunk verified; OUT "-" writes to standard output. From a user's data
repository (with their key), writes version N of subscription NAME's user disk: a
backup restored without any VAT.`,
  async run(args) {
    const { values, positionals } = parseFlags("export", args, {
      ...STORE_FLAGS,
      disk: { type: "string" },
      quiet: { type: "boolean" },
      "user-key": { type: "string" },
      subscription: { type: "string" },
    });
    if (positionals.length !== 2) throw new UsageError("export: give REPO[@N] and OUT");
    if ((values["user-key"] === undefined) !== (values.subscription === undefined)) {
      throw new UsageError("export: --user-key and --subscription go together (a data repository)");
    }
    const ref = parseRepoRef(positionals[0]);
    const store = await openStore(ref.repo, { s3: s3Options(values) });
    try {
      let repo: Repository;
      if (values["user-key"]) {
        const data = await DataRepository.open(store, await loadUserKey(values["user-key"]));
        repo = data.subscription(values.subscription!);
        values.disk ??= "user";
      } else {
        repo = await Repository.open(store);
        if (repo.config.kind === "data") {
          throw new UsageError(
            `${store.location} is a data repository: give --user-key FILE --subscription NAME`,
          );
        }
      }
      const version = await repo.resolveVersion(ref.version);
      const progress = terminalProgress({ quiet: values.quiet || positionals[1] === "-" });
      try {
        await exportDisk(repo, version, positionals[1], {
          disk: values.disk,
          onProgress: progress.listener,
        });
      } finally {
        progress.done();
      }
      return 0;
    } finally {
      await store.close();
    }
  },
};
