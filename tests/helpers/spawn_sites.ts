/**
 * Finds every program that a tree of TypeScript sources spawns, by reading the text (no
 * type checker): `new Deno.Command(X, ...)`, Playwright's `executablePath: X`, and calls
 * of helpers that hand one of their parameters to those (`runTool("qemu-img", ...)`,
 * `spawnQemu(QEMU_BINARY, ...)`, a test's `_run("sfdisk", ...)`, `_run(["ceph", ...])`),
 * followed through helpers of helpers. X is resolved when it is a string literal, a
 * `const` of a string literal (in the same file, or exported by any scanned file), or a
 * ternary of those; anything else is an *unresolved* site that the caller must declare.
 *
 * @module
 */

/** A place where a program is started. */
export interface SpawnSite {
  /** The file, relative to the scanned root. */
  file: string;
  line: number;
  /** The program's name (the basename of an absolute path). */
  program: string;
}

/** A place whose program the scanner could not work out from the text. */
export interface UnresolvedSite {
  file: string;
  line: number;
  /** The expression that names the program, as written. */
  expr: string;
}

/** What `scanSpawnSites` found. */
export interface SpawnScan {
  sites: SpawnSite[];
  unresolved: UnresolvedSite[];
  /** Files that import `node:child_process` (spawns this scanner does not follow). */
  childProcessImports: string[];
  /** Shell scripts written by the sources (`#!/bin/sh` in a string), which run programs too. */
  scriptsWritten: { file: string; line: number }[];
}

// Built from pieces so that this file does not match itself.
const _SPAWN = new RegExp(["new Deno\\.Command\\(", "executable" + "Path:\\s*"].join("|"), "g");

interface _Source {
  file: string;
  text: string;
}

/** A helper whose parameter number `index` is the program (or, `inArray`, its [0]). */
interface _Spawner {
  file: string;
  name: string;
  index: number;
  inArray: boolean;
}

/** Reads every `.ts`/`.tsx` file under `root/dirs` and finds what they spawn. */
export async function scanSpawnSites(root: string, dirs: string[]): Promise<SpawnScan> {
  const sources: _Source[] = [];
  for (const dir of dirs) await _collect(root, dir, sources);
  return scanSources(sources);
}

/** `scanSpawnSites` over sources given as text (for the scanner's own tests). */
export function scanSources(sources: _Source[]): SpawnScan {
  const exported = new Map<string, string[]>();
  for (const { text } of sources) {
    for (const m of text.matchAll(/export const (\w+)(?:\s*:\s*string)?\s*=\s*"([^"]+)"/g)) {
      exported.set(m[1], [...(exported.get(m[1]) ?? []), m[2]]);
    }
  }
  const scan: SpawnScan = {
    sites: [],
    unresolved: [],
    childProcessImports: [],
    scriptsWritten: [],
  };
  const spawners: _Spawner[] = [];
  const seen = new Set<string>();

  // Resolves `expr` at `offset` of `src`: programs, a new spawner, or unresolved.
  const resolve = (src: _Source, offset: number, expr: string) => {
    const line = src.text.slice(0, offset).split("\n").length;
    for (const part of _alternatives(expr)) {
      if (part === "Deno.execPath()") continue;
      const literal = part.match(/^["'`]([^"'`$]+)["'`]$/)?.[1] ??
        part.match(/^\[\s*["'`]([^"'`$]+)["'`]/)?.[1];
      if (literal !== undefined) {
        scan.sites.push({ file: src.file, line, program: _basename(literal) });
        continue;
      }
      const constant = /^\w+$/.test(part)
        ? src.text.match(new RegExp(`const ${part}(?:\\s*:\\s*string)?\\s*=\\s*"([^"]+)"`))?.[1]
        : undefined;
      const values = constant !== undefined ? [constant] : exported.get(part);
      if (values) {
        for (const v of values) scan.sites.push({ file: src.file, line, program: _basename(v) });
        continue;
      }
      const param = part.match(/^(\w+)(\[0\])?$/);
      const owner = param ? _enclosingFunction(src.text, offset, param[1]) : null;
      if (owner && param) {
        const key = `${src.file}:${owner.name}:${owner.index}`;
        if (!seen.has(key)) {
          seen.add(key);
          spawners.push({ file: src.file, ...owner, inArray: param[2] !== undefined });
        }
        continue;
      }
      scan.unresolved.push({ file: src.file, line, expr: part });
    }
  };

  for (const src of sources) {
    if (/from\s+"node:child_process"/.test(src.text)) scan.childProcessImports.push(src.file);
    for (const m of src.text.matchAll(/#!\/(?:usr\/)?bin\/(?:env )?(?:ba)?sh/g)) {
      scan.scriptsWritten.push({
        file: src.file,
        line: src.text.slice(0, m.index).split("\n").length,
      });
    }
    for (const m of src.text.matchAll(_SPAWN)) {
      const start = m.index! + m[0].length;
      resolve(src, m.index!, _argument(src.text, start, 0));
    }
  }
  // Each spawner's callers may be spawners in turn: follow until none is new.
  for (let i = 0; i < spawners.length; i++) {
    const spawner = spawners[i];
    const base = _basename(spawner.file).replace(/\.tsx?$/, "");
    const importer = new RegExp(
      `import\\s*\\{[^}]*\\b${spawner.name}\\b[^}]*\\}\\s*from\\s*"[^"]*/${base}\\.ts"`,
    );
    for (const src of sources) {
      if (src.file !== spawner.file && !importer.test(src.text)) continue;
      for (const m of src.text.matchAll(new RegExp(`(?<![.\\w])${spawner.name}\\(`, "g"))) {
        const before = src.text.slice(Math.max(0, m.index! - 9), m.index!);
        if (/function\s*$/.test(before)) continue;
        const first = _argument(src.text, m.index! + m[0].length, 0);
        if (/^\w+\s*\??:/.test(first)) continue; // a method's own definition
        const arg = _argument(src.text, m.index! + m[0].length, spawner.index);
        if (arg === "") continue; // the parameter's default, which resolved where it is used
        resolve(src, m.index!, spawner.inArray && !arg.startsWith("[") ? `${arg}[0]` : arg);
      }
    }
  }
  return scan;
}

async function _collect(root: string, dir: string, out: _Source[]): Promise<void> {
  for await (const entry of Deno.readDir(`${root}/${dir}`)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) await _collect(root, path, out);
    else if (/\.tsx?$/.test(entry.name)) {
      out.push({ file: path, text: _withoutComments(await Deno.readTextFile(`${root}/${path}`)) });
    }
  }
}

/** `text` with its comments blanked out (newlines kept, so line numbers stay right). */
function _withoutComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, " "))
    .replace(/(^|\s)\/\/.*$/gm, "$1");
}

function _basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** The text of argument number `index` of a call whose arguments start at `start`. */
function _argument(text: string, start: number, index: number): string {
  let depth = 0;
  let quote = "";
  let current = 0;
  let argStart = start;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === "\\") i++;
      else if (c === quote) quote = "";
      continue;
    }
    if (c === '"' || c === "'" || c === "`") quote = c;
    else if ("([{".includes(c)) depth++;
    else if (")]}".includes(c) || (c === "," && depth === 0)) {
      if (depth > 0 && c !== ",") {
        depth--;
        continue;
      }
      if (current === index) return text.slice(argStart, i).trim();
      if (c !== ",") return "";
      current++;
      argStart = i + 1;
    }
  }
  return "";
}

/** `a ? b : c` as [b, c] (recursively); anything else as itself. */
function _alternatives(expr: string): string[] {
  const m = expr.match(/^[\w.!()]+\s*\?\s*([^:]+?)\s*:\s*(.+)$/s);
  return m ? [..._alternatives(m[1].trim()), ..._alternatives(m[2].trim())] : [expr];
}

/** The nearest function before `offset` that has a parameter `param`, and its index. */
function _enclosingFunction(
  text: string,
  offset: number,
  param: string,
): { name: string; index: number } | null {
  const heads =
    /(?:function\s+(\w+)\s*\(|(?:const|let)\s+(\w+)\s*=\s*(?:async\s*)?\(|^\s*(?:export\s+)?(?:async\s+)?(\w+)\s*\()/gm;
  let found: { name: string; index: number } | null = null;
  for (const m of text.slice(0, offset).matchAll(heads)) {
    const name = m[1] ?? m[2] ?? m[3];
    const params: string[] = [];
    for (let i = 0;; i++) {
      const arg = _argument(text, m.index! + m[0].length, i);
      if (arg === "") break;
      params.push(arg.match(/^(?:\.\.\.)?(\w+)/)?.[1] ?? "");
    }
    const index = params.indexOf(param);
    if (index >= 0) found = { name, index };
  }
  return found;
}
