/**
 * An in-memory `Store`: the test double, and a reference for what the conformance
 * suite expects.
 *
 * @module
 */

import { NotFoundError } from "../errors.ts";
import { checkKey, checkPrefix, type ObjectInfo, type Store } from "./store.ts";

/** A `Store` that keeps objects in a map. */
export class MemoryStore implements Store {
  readonly location = "memory:";
  readonly canList = true;
  readonly objects = new Map<string, { data: Uint8Array; modifiedMs: number }>();

  // deno-lint-ignore require-await
  async get(key: string): Promise<Uint8Array> {
    const object = this.objects.get(checkKey(key));
    if (!object) throw new NotFoundError(`${key} does not exist in memory:`);
    return object.data.slice();
  }

  async getRange(key: string, offset: number, length: number): Promise<Uint8Array> {
    const data = await this.get(key);
    return data.slice(offset, offset + length);
  }

  // deno-lint-ignore require-await
  async put(key: string, data: Uint8Array): Promise<void> {
    this.objects.set(checkKey(key), { data: data.slice(), modifiedMs: Date.now() });
  }

  // deno-lint-ignore require-await
  async create(key: string, data: Uint8Array): Promise<boolean> {
    const existing = this.objects.get(checkKey(key));
    // The same bytes again: this caller's own create, retried after a lost reply.
    if (existing) return Buffer.from(existing.data).equals(data);
    this.objects.set(key, { data: data.slice(), modifiedMs: Date.now() });
    return true;
  }

  // deno-lint-ignore require-await
  async stat(key: string): Promise<ObjectInfo | null> {
    const object = this.objects.get(checkKey(key));
    return object ? { sizeBytes: object.data.length, modifiedMs: object.modifiedMs } : null;
  }

  async *list(prefix: string): AsyncIterable<string> {
    checkPrefix(prefix);
    for (const key of [...this.objects.keys()]) if (key.startsWith(prefix)) yield key;
  }

  // deno-lint-ignore require-await
  async delete(key: string): Promise<void> {
    this.objects.delete(checkKey(key));
  }

  async close(): Promise<void> {}
}
