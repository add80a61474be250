import assert from "node:assert/strict";
import { NotFoundError } from "../errors.ts";
import { hashChunk } from "../repo/chunk_codec.ts";
import { distinctChunks, makeTestRepository } from "../prefetch/_test_repository.ts";
import { repositoryTransport } from "./transport.ts";

Deno.test("repositoryTransport() reads a chunk's plaintext, and says when the repository lacks one", async () => {
  const t = await makeTestRepository({ system: distinctChunks(2, 5) });
  try {
    const index = await t.repo.readDiskIndex(t.version.manifest.disks.system.index);
    const transport = repositoryTransport(t.repo);
    const data = await transport(index.hash(1)!);
    assert.deepEqual(new Uint8Array(hashChunk(data)), index.hash(1));
    await assert.rejects(
      transport(hashChunk(new Uint8Array([9]))),
      (err: Error) => err instanceof NotFoundError && /is missing from/.test(err.message),
    );
  } finally {
    await t.close();
  }
});
