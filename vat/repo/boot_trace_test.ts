import assert from "node:assert/strict";
import { IntegrityError } from "../errors.ts";
import { generateSigningKey } from "../auth/signing_key.ts";
import { distinctChunks, makeTestRepository } from "../prefetch/_test_repository.ts";
import {
  mergeTrace,
  openTrace,
  readBootTrace,
  signTrace,
  traceKey,
  type TraceRecording,
  writeBootTrace,
} from "./boot_trace.ts";

function recording(order: [string, number][]): TraceRecording {
  const reads = new Map<string, Map<number, number>>();
  for (const [disk, chunk] of order) {
    const counts = reads.get(disk) ?? new Map();
    counts.set(chunk, (counts.get(chunk) ?? 0) + 1);
    reads.set(disk, counts);
  }
  return { order, reads };
}

Deno.test("writeBootTrace() stores a signed trace; readBootTrace() merges runs into the profile", async () => {
  const t = await makeTestRepository({
    system: distinctChunks(8, 1),
    kernel: distinctChunks(2, 2),
  });
  try {
    assert.equal(await readBootTrace(t.repo, t.version), null);
    await writeBootTrace(
      t.repo,
      t.version,
      recording([["kernel", 0], ["kernel", 1], ["system", 3], ["system", 3]]),
      t.key,
      "READY",
    );
    const first = await readBootTrace(t.repo, t.version);
    assert.deepEqual(first?.disks, ["kernel", "system"]);
    assert.deepEqual(first?.order, [[0, 0], [0, 1], [1, 3], [1, 3]]);
    assert.equal(first?.runs, 1);
    assert.equal(first?.until, "READY");
    await writeBootTrace(t.repo, t.version, recording([["system", 5], ["system", 3]]), t.key, null);
    const second = (await readBootTrace(t.repo, t.version))!;
    assert.equal(second.runs, 2);
    assert.deepEqual(second.order, [[1, 5], [1, 3]], "the newest boot's order");
    assert.deepEqual(second.profile[0], [1, 3, 3], "chunk 3 was read three times");
    assert.equal(second.profile.length, 4);
  } finally {
    await t.close();
  }
});

Deno.test("openTrace() refuses a tampered trace, another key, and chunks outside the disk", async () => {
  const t = await makeTestRepository({ system: distinctChunks(4, 3) });
  const dir = await Deno.makeTempDir();
  try {
    const stranger = await generateSigningKey(`${dir}/k`);
    const meta = {
      repoId: t.repo.config.id,
      version: 1,
      publisher: t.key.publicKeyId,
      until: null,
    };
    const good = mergeTrace(null, recording([["system", 1]]), meta);
    const expect = {
      repoId: t.repo.config.id,
      version: t.version,
      trustedKeys: t.repo.config.publisherKeys,
    };
    assert.deepEqual(openTrace(signTrace(good, t.key), expect).order, [[0, 1]]);

    const tampered = JSON.parse(new TextDecoder().decode(signTrace(good, t.key)));
    tampered.payload = tampered.payload.replace('"order":[[0,1]]', '"order":[[0,2]]');
    assert.throws(
      () => openTrace(new TextEncoder().encode(JSON.stringify(tampered)), expect),
      (err) => err instanceof IntegrityError && /signature does not verify/.test(err.message),
    );
    assert.throws(
      () => openTrace(signTrace({ ...good, publisher: stranger.publicKeyId }, stranger), expect),
      /signature does not verify/,
    );
    const outside = { ...good, order: [[0, 4]] as [number, number][] };
    assert.throws(() => openTrace(signTrace(outside, t.key), expect), /field order is invalid/);
    const otherDisk = { ...good, disks: ["user"] };
    assert.throws(() => openTrace(signTrace(otherDisk, t.key), expect), /field disks user/);
    const moved = { ...good, version: 2 };
    assert.throws(() => openTrace(signTrace(moved, t.key), expect), /field version/);
    // A stranger cannot write one either.
    await assert.rejects(
      writeBootTrace(t.repo, t.version, recording([["system", 0]]), stranger, null),
      /not a publisher/,
    );
    assert.equal(t.store.objects.has(traceKey(1)), false);
  } finally {
    await t.close();
    await Deno.remove(dir, { recursive: true });
  }
});
