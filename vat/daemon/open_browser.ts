/**
 * Kiosk: `vat` without `--headless` opens its UI in a local browser, as an app window
 * (Chromium's `--app`, or `--kiosk` full screen with `vat --kiosk`; Firefox has only
 * `--kiosk`), with a fresh profile in the state directory. Without a display or a
 * browser it opens nothing and says why; the sign-in URL is printed either way.
 *
 * The token never goes on the browser's command line, which every local user can read
 * (`/proc/PID/cmdline`): the browser opens a page in the profile directory (mode 0700,
 * like the token file) that forwards to the sign-in URL.
 *
 * @module
 */

import { writeFileAtomic } from "../fs_atomic.ts";

/** The browsers looked for, in order of preference, with how each opens an app window. */
export const BROWSERS: readonly { name: string; kind: "chromium" | "firefox" }[] = [
  { name: "chromium", kind: "chromium" },
  { name: "chromium-browser", kind: "chromium" },
  { name: "google-chrome", kind: "chromium" },
  { name: "google-chrome-stable", kind: "chromium" },
  { name: "firefox", kind: "firefox" },
  { name: "firefox-esr", kind: "firefox" },
];

/** What `chooseBrowser` needs to know about the machine. */
export interface BrowserEnvironment {
  /** Reads an environment variable. */
  env(name: string): string | undefined;
  /** The path of an installed program, or null. */
  which(program: string): string | null;
}

/** A browser to start. */
export interface BrowserLaunch {
  name: string;
  command: string;
  args: string[];
}

/** Either a browser to start, or why none is started. */
export type BrowserChoice = { launch: BrowserLaunch } | { reason: string };

/** Chooses a browser that opens `url` with the profile in `profileDir`. Pure. */
export function chooseBrowser(
  options: { url: string; profileDir: string; kiosk: boolean },
  machine: BrowserEnvironment,
): BrowserChoice {
  if (!machine.env("DISPLAY") && !machine.env("WAYLAND_DISPLAY")) {
    return { reason: "there is no display (DISPLAY and WAYLAND_DISPLAY are unset)" };
  }
  for (const { name, kind } of BROWSERS) {
    const command = machine.which(name);
    if (command === null) continue;
    const args = kind === "chromium"
      ? [
        `--user-data-dir=${options.profileDir}`,
        "--no-first-run",
        "--no-default-browser-check",
        // Full screen is `--kiosk URL`, not `--kiosk --app=URL`: with both, Chromium
        // under a Wayland kiosk compositor (cage) exits at once.
        ...(options.kiosk ? ["--kiosk", options.url] : [`--app=${options.url}`]),
      ]
      : ["--new-instance", "--profile", options.profileDir, "--kiosk", options.url];
    return { launch: { name, command, args } };
  }
  return {
    reason: `no browser is installed (looked for ${
      BROWSERS.map((b) => b.name).join(", ")
    }; install one: apt-get install chromium)`,
  };
}

/** The path of `program` in `$PATH` if it is an executable file there, else null. */
export function findOnPath(program: string, path = Deno.env.get("PATH") ?? ""): string | null {
  for (const dir of path.split(":")) {
    if (dir === "") continue;
    try {
      const info = Deno.statSync(`${dir}/${program}`);
      if (info.isFile && ((info.mode ?? 0) & 0o111) !== 0) return `${dir}/${program}`;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound || err instanceof Deno.errors.PermissionDenied)) {
        throw err;
      }
    }
  }
  return null;
}

/** A browser the daemon started. */
export interface OpenedBrowser {
  name: string;
  pid: number;
  /** Ends the browser (SIGTERM, then SIGKILL after 5 s); waits for it to exit. */
  close(): Promise<void>;
}

/** setpriv (util-linux) sets the parent-death signal before it execs the browser. */
const _SETPRIV = "/usr/bin/setpriv";

/**
 * Opens `signInUrl` in a local browser if there is a display and a browser; returns
 * null (having logged why) otherwise. The profile `stateDir/browser/` is made afresh.
 * The browser does not keep the daemon alive, is ended by `close()`, and gets SIGTERM
 * if the daemon dies (parent-death signal, as for QEMU).
 */
export async function openBrowser(options: {
  signInUrl: string;
  stateDir: string;
  kiosk: boolean;
  log: (line: string) => void;
  machine?: BrowserEnvironment;
}): Promise<OpenedBrowser | null> {
  const profileDir = `${options.stateDir}/browser`;
  const forwardPage = `${profileDir}/signin.html`;
  const choice = chooseBrowser(
    { url: `file://${encodeURI(forwardPage)}`, profileDir, kiosk: options.kiosk },
    options.machine ?? { env: (name) => Deno.env.get(name), which: (p) => findOnPath(p) },
  );
  if ("reason" in choice) {
    options.log(`not opening a browser: ${choice.reason}; open the sign-in URL instead`);
    return null;
  }
  await Deno.remove(profileDir, { recursive: true }).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
  await Deno.mkdir(profileDir, { mode: 0o700 });
  await writeFileAtomic(forwardPage, new TextEncoder().encode(_forwardPage(options.signInUrl)), {
    mode: 0o600,
  });
  const { launch } = choice;
  const withSetpriv = _exists(_SETPRIV);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(withSetpriv ? _SETPRIV : launch.command, {
      args: withSetpriv
        ? ["--pdeathsig", "TERM", "--", launch.command, ...launch.args]
        : launch.args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  } catch (err) {
    options.log(`not opening a browser: ${launch.command} did not start (${err})`);
    return null;
  }
  // The daemon runs until it is told to stop, not until its browser closes.
  child.unref();
  let exited = false;
  const status = child.status.then(() => {
    exited = true;
  });
  options.log(`opened the UI in ${launch.name}${options.kiosk ? " (kiosk)" : ""}`);
  return {
    name: launch.name,
    pid: child.pid,
    async close() {
      if (!exited) {
        child.ref();
        _kill(child, "SIGTERM");
        const timer = setTimeout(() => _kill(child, "SIGKILL"), 5000);
        await status;
        clearTimeout(timer);
      }
    },
  };
}

function _kill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch (err) {
    // It exited between the check and the kill.
    if (!(err instanceof TypeError || err instanceof Deno.errors.NotFound)) throw err;
  }
}

function _exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function _forwardPage(url: string): string {
  const attr = url.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
  return `<!doctype html>
<meta charset="utf-8">
<meta http-equiv="refresh" content="0; url=${attr}">
<title>VAT</title>
<p>Opening the VAT…</p>
`;
}
