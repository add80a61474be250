/**
 * The daemon's API: one Hono app made of one sub-app per area, JSON over HTTP, live
 * status as server-sent events. The CLI (and later the UI) call it through the typed
 * client (`hc<ApiApp>`, see `vat/api/api_client.ts`). Every route needs the token or a
 * browser session (`requireToken`; signing in trades the one for the other); errors are
 * turned into JSON in one `onError`. The root app also serves the browser UI (`vat/ui/`).
 *
 * @module
 */

import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { streamSSE } from "hono/streaming";
import { validator } from "hono/validator";
import { ConflictError, NotFoundError, PermanentError, UsageError, VatError } from "../errors.ts";
import type { Appliances } from "../daemon/appliances.ts";
import { requireToken } from "./require_token.ts";
import { BrowserSessions, SESSION_COOKIE } from "../ui/browser_sessions.ts";
import { signInRoutes, signOutRoutes } from "../ui/session_routes.ts";
import { uiRoutes } from "../ui/ui_routes.ts";
import { proxyVnc } from "../ui/vnc_proxy.ts";
import { followConsoleLog } from "../vmm/follow_console_log.ts";
import type { AccelDecision } from "../vmm/accelerator.ts";
import type { DirectoryUsers } from "../daemon/directory_users.ts";
import { LoginRefusedError } from "../directory/login_client.ts";
import { loginRoutes, requireCurrentUser, SessionUsers, userRoutes } from "./user_routes.ts";

/** What the API needs from the daemon. */
export interface ApiContext {
  appliances: Appliances;
  token: string;
  stateDir: string;
  version: string;
  /** Cache counters and sizes. */
  cacheStats(): unknown;
  /** The remote display's URL and certificate fingerprint, if it is on (`--listen`). */
  remoteDisplay?(): { url: string; fingerprint: string } | null;
  /** What guests run on and why (null until decided). */
  accel?(): AccelDecision | null;
  /** The VAT's users, when it has a directory (`--directory`); `appliances` are theirs. */
  users?: DirectoryUsers;
}

function applianceRoutes(ctx: ApiContext) {
  const app = ctx.appliances;
  return new Hono()
    .get("/", async (c) => c.json(await app.list()))
    .post("/", async (c) => {
      const body = await c.req.json().catch(() => ({})) as { repo?: string; name?: string };
      if (typeof body.repo !== "string" || body.repo === "") {
        throw new UsageError('give the appliance\'s repository as {"repo": "..."}');
      }
      return c.json(await app.add(body.repo, body.name), 201);
    })
    .get("/:name", async (c) => c.json(await app.status(c.req.param("name"))))
    .post(
      "/:name/start",
      validator("json", (value) => {
        const body = (value ?? {}) as { takeOver?: unknown; fork?: unknown };
        if (body.takeOver !== undefined && typeof body.takeOver !== "boolean") {
          throw new UsageError('"takeOver" is true or false');
        }
        if (body.fork !== undefined && typeof body.fork !== "boolean") {
          throw new UsageError('"fork" is true or false');
        }
        const options: { takeOver?: boolean; fork?: boolean } = {};
        if (body.takeOver) options.takeOver = true;
        if (body.fork) options.fork = true;
        return options;
      }),
      async (c) => c.json(await app.start(c.req.param("name"), c.req.valid("json"))),
    )
    .get("/:name/snapshots", async (c) => c.json(await app.snapshots(c.req.param("name"))))
    .post("/:name/backup", async (c) => c.json(await app.backupNow(c.req.param("name"))))
    .post(
      "/:name/undo",
      validator("json", (value) => {
        const version = (value as { version?: unknown })?.version;
        if (!Number.isSafeInteger(version) || (version as number) < 1) {
          throw new UsageError('give the version to go back to as {"version": N}');
        }
        return { version: version as number };
      }),
      async (c) => c.json(await app.undo(c.req.param("name"), c.req.valid("json").version)),
    )
    .post("/:name/stop", async (c) => c.json(await app.stop(c.req.param("name"))))
    .post("/:name/suspend", async (c) => c.json(await app.suspend(c.req.param("name"))))
    .post("/:name/reset", async (c) => c.json(await app.reset(c.req.param("name"))))
    .post(
      "/:name/hoard",
      validator("json", (value) => {
        const on = (value as { on?: unknown })?.on;
        if (typeof on !== "boolean") {
          throw new UsageError('say whether to hoard as {"on": true} or {"on": false}');
        }
        return { on };
      }),
      async (c) => c.json(await app.hoard(c.req.param("name"), c.req.valid("json").on)),
    )
    .delete(
      "/:name",
      validator("query", (value) => ({
        confirm: String(value.confirm ?? ""),
        discardUnsent: value.discardUnsent === "1",
      })),
      async (c) => {
        const name = c.req.param("name");
        const query = c.req.valid("query");
        // Deleting loses the user disk: the request must name the appliance again.
        if (query.confirm !== name) {
          throw new UsageError(
            `deleting "${name}" destroys its user disk; confirm by naming it (vat delete ${name} --yes)`,
          );
        }
        await app.delete(name, { discardUnsent: query.discardUnsent });
        return c.json({ deleted: name });
      },
    )
    .get("/:name/console", async (c) => c.text(await app.consoleLog(c.req.param("name"))))
    .get("/:name/console/stream", (c) => {
      const path = app.consoleLogPath(c.req.param("name"));
      return streamSSE(c, async (stream) => {
        const abort = new AbortController();
        stream.onAbort(() => abort.abort());
        // The log is its user's: the stream ends when they log out.
        const stillTheirs = whileSameUser(ctx, () => abort.abort());
        abort.signal.addEventListener("abort", stillTheirs.stop);
        for await (const chunk of followConsoleLog(path, { signal: abort.signal })) {
          // JSON keeps the log's line ends (CR LF) intact through SSE's line format.
          await stream.writeSSE({
            event: chunk.reset ? "reset" : "append",
            data: JSON.stringify(chunk.text),
          });
        }
      });
    })
    .get("/:name/vnc", async (c) => {
      const status = await app.status(c.req.param("name"));
      if (status.vncWebsocketPort === null) {
        throw new ConflictError(`"${status.name}" has no screen: it is ${status.state}`);
      }
      return proxyVnc(c.req.raw, status.vncWebsocketPort);
    })
    .post(
      "/:name/console",
      validator("json", (value) => {
        const line = (value as { line?: unknown })?.line;
        if (typeof line !== "string" || /[\r\n]/.test(line)) {
          throw new UsageError('give one line to type as {"line": "..."}');
        }
        return { line };
      }),
      async (c) => {
        await app.consoleSend(c.req.param("name"), c.req.valid("json").line);
        return c.json({ sent: true });
      },
    )
    .post(
      "/:name/publish",
      validator("json", (value) => {
        const key = (value as { key?: unknown })?.key;
        if (typeof key !== "string") throw new UsageError("give the publisher key's path");
        return { key };
      }),
      async (c) => c.json(await app.publishFrom(c.req.param("name"), c.req.valid("json").key)),
    );
}

/**
 * Watches for the VAT's user to change (with a directory): `ok()` is false from then
 * on, and `onChange` is called once. Without a directory it never changes.
 */
function whileSameUser(ctx: ApiContext, onChange: () => void) {
  const users = ctx.users;
  const user = users?.current?.name ?? null;
  let ok = true;
  const check = () => {
    if (ok && (users?.current?.name ?? null) !== user) {
      ok = false;
      onChange();
    }
  };
  users?.addEventListener("change", check);
  return { ok: () => ok, stop: () => users?.removeEventListener("change", check) };
}

/** Builds the API app. */
export function apiApp(ctx: ApiContext) {
  const sessions = new BrowserSessions();
  const sessionUsers = new SessionUsers();
  const users = ctx.users;
  const api = new Hono()
    .use("*", requireToken({ token: ctx.token, sessions, cookie: SESSION_COOKIE }))
    .use("*", requireCurrentUser(users, sessionUsers))
    .use("/appliances/:name/*", async function refuseOthersAppliances(c, next) {
      // Another user's appliance on this VAT is not merely unknown: it is forbidden.
      if (users && await users.belongsToAnother(c.req.param("name"))) {
        throw new HTTPException(403, {
          message: `"${c.req.param("name")}" belongs to another user of this VAT`,
        });
      }
      await next();
    })
    .route("/", userRoutes(users))
    .get("/status", async (c) =>
      c.json({
        version: ctx.version,
        stateDir: ctx.stateDir,
        pid: Deno.pid,
        appliances: await ctx.appliances.list(),
        cache: ctx.cacheStats(),
        remoteDisplay: ctx.remoteDisplay?.() ?? null,
        accel: ctx.accel?.() ?? null,
      }))
    .get("/events", (c) =>
      streamSSE(c, async (stream) => {
        let wake: (() => void) | null = null;
        const onChange = () => wake?.();
        ctx.appliances.addEventListener("change", onChange);
        stream.onAbort(() => wake?.());
        // The list is the logged-in user's: the stream ends when another (or nobody) is.
        const sameUser = whileSameUser(ctx, () => wake?.());
        try {
          while (!stream.aborted && sameUser.ok()) {
            await stream.writeSSE({
              event: "status",
              data: JSON.stringify(await ctx.appliances.list()),
            });
            // Send again on a change, or every 15 s to show new versions and keep
            // the connection alive through proxies.
            let timer: ReturnType<typeof setTimeout> | undefined;
            await new Promise<void>((resolve) => {
              wake = resolve;
              timer = setTimeout(resolve, 15_000);
            });
            clearTimeout(timer);
            wake = null;
          }
        } finally {
          ctx.appliances.removeEventListener("change", onChange);
          sameUser.stop();
        }
      }))
    .route("/appliances", applianceRoutes(ctx))
    .route("/session", signOutRoutes(sessions));

  // Signing in is the one API route without a session: it is mounted ahead of `api`.
  const root = new Hono()
    .route("/", uiRoutes())
    .route("/api/session", signInRoutes(ctx.token, sessions))
    .route("/api/login", loginRoutes(users, sessions, sessionUsers))
    .route("/api", api);
  root.onError((err, c) => {
    if (err instanceof HTTPException) return c.json({ error: err.message }, err.status);
    if (err instanceof LoginRefusedError) {
      if (err.retryAfterMs > 0) {
        c.header("Retry-After", String(Math.ceil(err.retryAfterMs / 1000)));
        return c.json({ error: err.message, retryAfterMs: err.retryAfterMs }, 429);
      }
      return c.json({ error: err.message }, 401);
    }
    const status = err instanceof NotFoundError
      ? 404
      : err instanceof ConflictError
      ? 409
      : err instanceof UsageError
      ? 400
      : err instanceof PermanentError
      ? 422
      : err instanceof VatError
      ? 500
      : 500;
    if (!(err instanceof VatError)) console.error("api: unexpected error", err);
    return c.json({
      error: err instanceof VatError ? err.message : `internal error: ${err.message}`,
    }, status);
  });
  return root;
}

/** The API's type, for the typed client. */
export type ApiApp = ReturnType<typeof apiApp>;
