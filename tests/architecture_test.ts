/**
 * The layers of docs/ARCHITECTURE.md, checked on the import graph: no folder of `vat/`
 * imports a folder of a higher layer, no folders import each other in a cycle, and the
 * browser UI reaches the product only through the API's modules; and no product file
 * grows past one concept's size.
 */

import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url).pathname;

/** Each folder's layer, top (0) to bottom; "" is `vat/` itself (the shared modules). */
const LAYERS: Record<string, number> = {
  cli: 0,
  daemon: 1,
  api: 2,
  demo: 3,
  users: 3,
  appliance: 4,
  backup: 5,
  prefetch: 5,
  update: 5,
  vmm: 6,
  nbd: 6,
  disk: 6,
  cache: 6,
  fetch: 6,
  repo: 7,
  serve: 7,
  auth: 7,
  directory: 7,
  ui: 8,
  image: 8,
  "": 9,
};

/** What the browser UI (`ui/`) may import of `vat/`. */
const UI_MAY_IMPORT = ["vat/api/wire_types.ts", "vat/api/api_app.ts", "vat/progress.ts"];

interface Edge {
  from: string;
  to: string;
  file: string;
}

async function* sources(dir: string): AsyncIterable<string> {
  for await (const entry of Deno.readDir(`${ROOT}${dir}`)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) yield* sources(path);
    else if (/\.tsx?$/.test(entry.name) && !/_test\.tsx?$/.test(entry.name)) yield path;
  }
}

function folderOf(path: string): string {
  const parts = path.split("/");
  return parts.length > 2 ? parts[1] : "";
}

function resolve(from: string, specifier: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const piece of specifier.split("/")) {
    if (piece === "..") parts.pop();
    else if (piece !== ".") parts.push(piece);
  }
  return parts.join("/");
}

async function importsOf(path: string): Promise<string[]> {
  const text = await Deno.readTextFile(`${ROOT}${path}`);
  return [...text.matchAll(/(?:from|import)\s+"(\.{1,2}\/[^"]+)"/g)].map((m) =>
    resolve(path, m[1])
  );
}

async function vatEdges(): Promise<Edge[]> {
  const edges: Edge[] = [];
  for await (const file of sources("vat")) {
    for (const target of await importsOf(file)) {
      const from = folderOf(file);
      const to = folderOf(target);
      if (from !== to) edges.push({ from, to, file: `${file} → ${target}` });
    }
  }
  return edges;
}

Deno.test("every folder of vat/ has a layer, and none imports a layer above it", async () => {
  const edges = await vatEdges();
  const folders = new Set(edges.flatMap((e) => [e.from, e.to]));
  const unknown = [...folders].filter((f) => !(f in LAYERS));
  assert.deepEqual(unknown, [], "folders missing from LAYERS (and from docs/ARCHITECTURE.md)");
  const upward = edges.filter((e) => LAYERS[e.to] < LAYERS[e.from]).map((e) => e.file);
  assert.deepEqual(upward, [], "imports that run up the layers");
});

Deno.test("no folders of vat/ import each other in a cycle", async () => {
  const edges = await vatEdges();
  const next = new Map<string, Set<string>>();
  for (const e of edges) {
    if (!next.has(e.from)) next.set(e.from, new Set());
    next.get(e.from)!.add(e.to);
  }
  const cycles: string[] = [];
  const state = new Map<string, "open" | "done">();
  const visit = (folder: string, path: string[]) => {
    if (state.get(folder) === "done") return;
    if (state.get(folder) === "open") {
      cycles.push([...path.slice(path.indexOf(folder)), folder].join(" → "));
      return;
    }
    state.set(folder, "open");
    for (const to of next.get(folder) ?? []) visit(to, [...path, folder]);
    state.set(folder, "done");
  };
  for (const folder of next.keys()) visit(folder, []);
  assert.deepEqual(cycles, []);
});

Deno.test("the browser UI imports the API's modules only", async () => {
  const wrong: string[] = [];
  for await (const file of sources("ui")) {
    for (const target of await importsOf(file)) {
      if (target.startsWith("vat/") && !UI_MAY_IMPORT.includes(target)) {
        wrong.push(`${file} → ${target}`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});

/** Past this, a file holds more than one concept: split it by concern. */
const MAX_LINES = 600;

Deno.test(`no product file is over ${MAX_LINES} lines`, async () => {
  const long: string[] = [];
  for (const dir of ["vat", "ui"]) {
    for await (const file of sources(dir)) {
      const lines = (await Deno.readTextFile(`${ROOT}${file}`)).split("\n").length - 1;
      if (lines > MAX_LINES) long.push(`${file}: ${lines} lines`);
    }
  }
  assert.deepEqual(long, []);
});
