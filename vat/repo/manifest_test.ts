import assert from "node:assert/strict";
import { generateSigningKey, signBytes, type SigningKey } from "../auth/signing_key.ts";
import { IntegrityError, UsageError } from "../errors.ts";
import { openManifest, signManifest, type VersionManifest } from "./manifest.ts";

const REPO_ID = "0123456789abcdef";
const HASH = "ab".repeat(32);

function validManifest(key: SigningKey): VersionManifest {
  const disk = (name: string, sizeBytes: number) => ({
    sizeBytes,
    chunkBytes: 65536,
    index: { key: `versions/2/${name}.0123456789abcdef.idx`, sha256: HASH, sizeBytes: 100 },
    dataChunks: 1,
    newStoredBytes: 10,
  });
  return {
    format: 1,
    repoId: REPO_ID,
    version: 2,
    parent: 1,
    createdAt: new Date(0).toISOString(),
    publisher: key.publicKeyId,
    nonce: "n",
    vm: { memoryMiB: 256, cpus: 1, kernel: "kernel", initrd: "initrd", append: "console=ttyS0" },
    disks: {
      system: disk("system", 1 << 30),
      kernel: disk("kernel", 8 << 20),
      initrd: disk("initrd", 4 << 20),
    },
  };
}

/** Signs any payload, as a publisher whose tools do not check would. */
function signRaw(payload: unknown, key: SigningKey): Uint8Array {
  const text = JSON.stringify(payload);
  const sig = signBytes(key, new TextEncoder().encode("vat-manifest-v1\n" + text));
  return new TextEncoder().encode(
    JSON.stringify({ payload: text, signatures: [{ key: key.publicKeyId, sig }] }),
  );
}

async function withKey(fn: (key: SigningKey) => void) {
  const dir = await Deno.makeTempDir({ prefix: "vat-manifest-" });
  try {
    fn(await generateSigningKey(`${dir}/key`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("openManifest() accepts a manifest within every bound", async () => {
  await withKey((key) => {
    const bytes = signManifest(validManifest(key), key);
    const opened = openManifest(bytes, {
      repoId: REPO_ID,
      version: 2,
      trustedKeys: [key.publicKeyId],
    });
    assert.equal(opened.vm.memoryMiB, 256);
  });
});

Deno.test("openManifest() refuses out-of-bounds VM fields, naming the field", async () => {
  await withKey((key) => {
    const cases: [string, (m: VersionManifest) => void, RegExp][] = [
      ["memoryMiB 2^40", (m) => m.vm.memoryMiB = 2 ** 40, /vm\.memoryMiB .*1099511627776/],
      ["memoryMiB 0", (m) => m.vm.memoryMiB = 0, /vm\.memoryMiB/],
      [
        "memoryMiB a string",
        (m) => (m.vm as unknown as Record<string, unknown>).memoryMiB = "256",
        /vm\.memoryMiB/,
      ],
      ["cpus 100000", (m) => m.vm.cpus = 100_000, /vm\.cpus/],
      [
        'kernel "constructor"',
        (m) => m.vm.kernel = "constructor",
        /vm\.kernel .*"constructor" is not a disk/,
      ],
      ['initrd "__proto__"', (m) => m.vm.initrd = "__proto__", /vm\.initrd/],
      ['kernel "toString"', (m) => m.vm.kernel = "toString", /vm\.kernel/],
      [
        "append not a string",
        (m) => (m.vm as unknown as Record<string, unknown>).append = ["x"],
        /vm\.append/,
      ],
      ["append with a newline", (m) => m.vm.append = "a\nb", /vm\.append/],
      ["append of 5000 characters", (m) => m.vm.append = "x".repeat(5000), /vm\.append/],
      [
        "ephemeralSizeBytes 2^62",
        (m) => m.vm.ephemeralSizeBytes = 2 ** 62,
        /vm\.ephemeralSizeBytes/,
      ],
      ["ephemeralSizeBytes -1", (m) => m.vm.ephemeralSizeBytes = -1, /vm\.ephemeralSizeBytes/],
      [
        "a kernel of 4 GiB",
        (m) => m.disks.kernel.sizeBytes = 4 * 1024 ** 3,
        /vm\.kernel .*larger than a boot file/,
      ],
      [
        "a disk of 2^50 bytes",
        (m) => m.disks.system.sizeBytes = 2 ** 50,
        /disks\.system\.sizeBytes/,
      ],
      [
        "an index of 2^40 bytes",
        (m) => m.disks.system.index.sizeBytes = 2 ** 40,
        /disks\.system\.index\.sizeBytes/,
      ],
      ["a chunk size of 3", (m) => m.disks.system.chunkBytes = 3, /disks\.system\.chunkBytes/],
      ["vm null", (m) => (m as unknown as Record<string, unknown>).vm = null, /field vm /],
      ["parent after itself", (m) => m.parent = 5, /field parent/],
      [
        "updateRequired a string",
        (m) => (m as unknown as Record<string, unknown>).updateRequired = "yes",
        /updateRequired/,
      ],
    ];
    for (const [what, mutate, message] of cases) {
      const manifest = validManifest(key);
      mutate(manifest);
      assert.throws(
        () =>
          openManifest(signRaw(manifest, key), {
            repoId: REPO_ID,
            version: 2,
            trustedKeys: [key.publicKeyId],
          }),
        (err: Error) => err instanceof IntegrityError && message.test(err.message),
        what,
      );
      // A publisher is stopped before signing.
      assert.throws(() => signManifest(manifest, key), UsageError, what);
    }
  });
});
