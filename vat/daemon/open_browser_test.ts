import assert from "node:assert/strict";
import { type BrowserEnvironment, chooseBrowser, findOnPath, openBrowser } from "./open_browser.ts";

const target = { url: "file:///s/browser/signin.html", profileDir: "/s/browser", kiosk: false };

function machine(env: Record<string, string>, installed: string[]): BrowserEnvironment {
  return {
    env: (name) => env[name],
    which: (program) => installed.includes(program) ? `/usr/bin/${program}` : null,
  };
}

Deno.test("chooseBrowser() opens Chromium as an app window with its own profile", () => {
  const choice = chooseBrowser(target, machine({ DISPLAY: ":0" }, ["firefox", "chromium"]));
  assert.deepEqual(choice, {
    launch: {
      name: "chromium",
      command: "/usr/bin/chromium",
      args: [
        "--user-data-dir=/s/browser",
        "--no-first-run",
        "--no-default-browser-check",
        "--app=file:///s/browser/signin.html",
      ],
    },
  });
});

Deno.test("chooseBrowser() adds --kiosk for Chromium-like browsers when asked", () => {
  for (const name of ["chromium-browser", "google-chrome"]) {
    const choice = chooseBrowser(
      { ...target, kiosk: true },
      machine({ WAYLAND_DISPLAY: "wayland-0" }, [name]),
    );
    assert.ok("launch" in choice);
    assert.equal(choice.launch.name, name);
    assert.ok(choice.launch.args.includes("--kiosk"));
    assert.deepEqual(choice.launch.args.slice(-2), ["--kiosk", target.url]);
    assert.ok(!choice.launch.args.some((a) => a.startsWith("--app")));
  }
});

Deno.test("chooseBrowser() falls back to Firefox in kiosk mode", () => {
  const choice = chooseBrowser(target, machine({ DISPLAY: ":0" }, ["firefox-esr"]));
  assert.deepEqual(choice, {
    launch: {
      name: "firefox-esr",
      command: "/usr/bin/firefox-esr",
      args: ["--new-instance", "--profile", "/s/browser", "--kiosk", target.url],
    },
  });
});

Deno.test("chooseBrowser() starts nothing without a display or a browser, and says why", () => {
  assert.deepEqual(chooseBrowser(target, machine({}, ["chromium"])), {
    reason: "there is no display (DISPLAY and WAYLAND_DISPLAY are unset)",
  });
  assert.deepEqual(chooseBrowser(target, machine({ DISPLAY: "" }, ["chromium"])), {
    reason: "there is no display (DISPLAY and WAYLAND_DISPLAY are unset)",
  });
  const none = chooseBrowser(target, machine({ DISPLAY: ":0" }, []));
  assert.ok("reason" in none);
  assert.match(none.reason, /no browser is installed .*apt-get install chromium/);
});

Deno.test("openBrowser() without a display logs why and touches nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lines: string[] = [];
    const looked: string[] = [];
    const opened = await openBrowser({
      signInUrl: "http://127.0.0.1:1/signin#token=t",
      stateDir: dir,
      kiosk: false,
      log: (line) => lines.push(line),
      machine: {
        env: () => undefined,
        which: (program) => {
          looked.push(program);
          return "/bin/true";
        },
      },
    });
    assert.equal(opened, null);
    assert.deepEqual(lines, [
      "not opening a browser: there is no display (DISPLAY and WAYLAND_DISPLAY are unset); " +
      "open the sign-in URL instead",
    ]);
    assert.deepEqual(looked, []);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("findOnPath() finds executable files only", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/run-me`, "#!/bin/sh\n", { mode: 0o755 });
    await Deno.writeTextFile(`${dir}/data`, "", { mode: 0o644 });
    await Deno.mkdir(`${dir}/folder`);
    assert.equal(findOnPath("run-me", `/nonexistent:${dir}`), `${dir}/run-me`);
    assert.equal(findOnPath("data", dir), null);
    assert.equal(findOnPath("folder", dir), null);
    assert.equal(findOnPath("nothing", dir), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
