/**
 * `vat login`, `vat logout`, `vat whoami`: a user's session on a VAT with a directory
 * (docs/USERS.md), for test rigs and headless VATs; the kiosk's login screen does the
 * same through the same API.
 *
 * @module
 */

import { expectOk } from "../api/api_client.ts";
import { readDaemonInfo } from "../api/daemon_info.ts";
import type { WhoAmI } from "../api/wire_types.ts";
import { NotFoundError } from "../errors.ts";
import { formatBytes } from "../progress.ts";
import { stateDir } from "../state_dir.ts";
import { parseFlags, printJson } from "./args.ts";
import type { Command } from "./command.ts";
import { readPassword } from "./password_input.ts";

async function _call<T>(state: string, method: string, path: string, body?: unknown): Promise<T> {
  const info = await readDaemonInfo(state);
  if (!info) {
    throw new NotFoundError(
      `no vat daemon is running for ${state} (start one with: vat --headless --directory DIR --state ${state})`,
    );
  }
  const token = (await Deno.readTextFile(`${state}/token`)).trim();
  return await expectOk<T>(fetch(new URL(path, info.url), {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  }));
}

export const loginCommand: Command = {
  name: "login",
  summary: "log a user in on this VAT (with --directory)",
  usage: `vat login NAME [--password-file F] [--state DIR] [--json]

Logs NAME in on the running daemon, against its directory, or offline against the key
slot cached at their last online login here. The password is the first line of F, else
asked on the terminal.`,
  async run(args) {
    const { values, positionals } = parseFlags("login", args, {
      state: { type: "string" },
      "password-file": { type: "string" },
      json: { type: "boolean" },
    });
    const name = positionals[0];
    if (!name) throw new NotFoundError("login: NAME is required");
    const password = await readPassword(values["password-file"], "--password-file", "password: ");
    const user = await _call<{ name: string; displayName: string; offline: boolean }>(
      stateDir(values.state),
      "POST",
      "/api/login",
      { name, password },
    );
    if (values.json) printJson(user);
    else {
      console.log(
        `logged in as ${user.displayName} (${user.name})` +
          (user.offline ? "; offline: using the password last used on this VAT" : ""),
      );
    }
    return 0;
  },
};

export const logoutCommand: Command = {
  name: "logout",
  summary: "log the user out: stop (or --suspend) their appliances",
  usage: `vat logout [--suspend] [--wait] [--state DIR] [--json]

Stops the user's appliances (or suspends them with --suspend) and logs them out; their
changes keep uploading. --wait waits until every change is backed up ("safe to leave").`,
  async run(args) {
    const { values } = parseFlags("logout", args, {
      state: { type: "string" },
      suspend: { type: "boolean" },
      wait: { type: "boolean" },
      json: { type: "boolean" },
    });
    const state = stateDir(values.state);
    const before = await _call<WhoAmI>(state, "GET", "/api/whoami");
    let who = await _call<WhoAmI>(state, "POST", "/api/logout", {
      suspend: values.suspend ?? false,
    });
    const name = before.user?.name;
    const mine = () => who.leaving.find((l) => l.name === name);
    while (values.wait && mine() && !mine()!.safe) {
      await new Promise((r) => setTimeout(r, 500));
      who = await _call<WhoAmI>(state, "GET", "/api/whoami");
    }
    if (values.json) printJson(who);
    else {
      const left = mine();
      console.log(
        `${name} logged out; ` +
          (!left || left.safe
            ? "safe to leave: every change is backed up"
            : `${formatBytes(left.pendingBytes)} still to back up`),
      );
    }
    return 0;
  },
};

export const whoamiCommand: Command = {
  name: "whoami",
  summary: "who is logged in on this VAT",
  usage: `vat whoami [--state DIR] [--json]`,
  async run(args) {
    const { values } = parseFlags("whoami", args, {
      state: { type: "string" },
      json: { type: "boolean" },
    });
    const who = await _call<WhoAmI>(stateDir(values.state), "GET", "/api/whoami");
    if (values.json) printJson(who);
    else if (who.user) {
      console.log(
        `${who.user.displayName} (${who.user.name})${
          who.user.offline ? ", logged in offline" : ""
        }`,
      );
    } else console.log("nobody is logged in");
    return 0;
  },
};
