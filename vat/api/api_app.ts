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
import { getCookie } from "hono/cookie";
import { HTTPException } from "hono/http-exception";
import { streamSSE } from "hono/streaming";
import { validator } from "hono/validator";
import { httpStatusOf, UsageError, VatError } from "../errors.ts";
import type { Appliances } from "../appliance/appliances.ts";
import { keyFingerprint } from "../auth/signing_key.ts";
import { requireToken } from "./require_token.ts";
import { BrowserSessions, SESSION_COOKIE } from "./browser_sessions.ts";
import { signInRoutes, signOutRoutes } from "./session_routes.ts";
import { uiRoutes } from "../ui/ui_routes.ts";
import { ScreenRelays } from "./vnc_relay.ts";
import { followConsoleLog } from "../vmm/follow_console_log.ts";
import type { AccelDecision } from "../vmm/accelerator.ts";

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
}

/** How often a heat map stream sends the map. */
const _HEAT_MAP_INTERVAL_MS = 1000;

function _isKeyId(k: unknown): k is string {
  try {
    return typeof k === "string" && keyFingerprint(k) !== "";
  } catch {
    return false;
  }
}

function applianceRoutes(ctx: ApiContext, sessions: BrowserSessions, screens: ScreenRelays) {
  const app = ctx.appliances;
  return new Hono()
    .get("/", async (c) => c.json(await app.list()))
    .post("/", async (c) => {
      const body = await c.req.json().catch(() => ({})) as {
        repo?: string;
        name?: string;
        publishers?: unknown;
      };
      if (typeof body.repo !== "string" || body.repo === "") {
        throw new UsageError('give the appliance\'s repository as {"repo": "..."}');
      }
      const publishers = body.publishers ?? [];
      if (!Array.isArray(publishers) || !publishers.every(_isKeyId)) {
        throw new UsageError('"publishers" is a list of public key ids ("ed25519:...")');
      }
      return c.json(await app.add(body.repo, body.name, publishers), 201);
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
    .get("/:name/stats", async (c) => c.json(await app.heatMap(c.req.param("name"))))
    .get("/:name/stats/stream", (c) => {
      const name = c.req.param("name");
      return streamSSE(c, async (stream) => {
        // The heat map changes with every guest request: a picture a second is live
        // enough to watch a boot, and cheap.
        while (!stream.aborted) {
          await stream.writeSSE({ event: "stats", data: JSON.stringify(await app.heatMap(name)) });
          await stream.sleep(_HEAT_MAP_INTERVAL_MS);
        }
      });
    })
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
      // `requireToken` let the request in: with the token (the CLI, a script), which
      // holds while the daemon runs, or with a session, which may end while it watches.
      const session = c.req.header("authorization") ? undefined : getCookie(c, SESSION_COOKIE);
      return await screens.open(c.req.raw, app.screen(c.req.param("name")), {
        session,
        stillAllowed: () => session === undefined || sessions.valid(session),
      });
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

/** Builds the API app. */
export function apiApp(ctx: ApiContext) {
  const sessions = new BrowserSessions();
  const screens = new ScreenRelays();
  sessions.onRevoke((id) => screens.closeSession(id));
  const api = new Hono()
    .use("*", requireToken({ token: ctx.token, sessions, cookie: SESSION_COOKIE }))
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
        try {
          while (!stream.aborted) {
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
        }
      }))
    .route("/appliances", applianceRoutes(ctx, sessions, screens))
    .route("/session", signOutRoutes(sessions));

  // Signing in is the one API route without a session: it is mounted ahead of `api`.
  const root = new Hono()
    .route("/", uiRoutes())
    .route("/api/session", signInRoutes(ctx.token, sessions))
    .route("/api", api);
  root.onError((err, c) => {
    if (err instanceof HTTPException) return c.json({ error: err.message }, err.status);
    const status = httpStatusOf(err) as 400 | 404 | 409 | 422 | 500;
    if (!(err instanceof VatError)) console.error("api: unexpected error", err);
    return c.json({
      error: err instanceof VatError ? err.message : `internal error: ${err.message}`,
    }, status);
  });
  return root;
}

/** The API's type, for the typed client. */
export type ApiApp = ReturnType<typeof apiApp>;
