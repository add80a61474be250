/// <reference lib="dom" />
/**
 * The open appliance's console: its serial log (streamed live from
 * `/api/appliances/NAME/console/stream` while the page shows), a line typed into it, and
 * the state of its screen (noVNC over the daemon's proxy).
 *
 * @module
 */

import { signal } from "@preact/signals";
import RFB from "@novnc/novnc";
import { api, ApiError, call } from "../api.ts";
import { sessionLost } from "./session.ts";

/** The most of the log the page keeps (its end). */
const LOG_LIMIT_CHARS = 256 * 1024;

/** The serial console's log (its end). */
export const serialLog = signal("");
/** Why the log or a typed line failed. */
export const consoleError = signal<string | null>(null);
/** The screen's connection. */
export const screen = signal<"off" | "connecting" | "connected" | "disconnected">("off");
/** Why the screen disconnected. */
export const screenError = signal<string | null>(null);

/** Follows `name`'s serial log as it grows; returns the function that stops. */
export function followSerialLog(name: string): () => void {
  serialLog.value = "";
  consoleError.value = null;
  const events = new EventSource(`/api/appliances/${encodeURIComponent(name)}/console/stream`);
  const take = (text: string, reset: boolean) => {
    const log = reset ? text : serialLog.value + text;
    serialLog.value = log.length > LOG_LIMIT_CHARS ? log.slice(-LOG_LIMIT_CHARS) : log;
    consoleError.value = null;
  };
  events.addEventListener("reset", (e) => take(JSON.parse((e as MessageEvent).data), true));
  events.addEventListener("append", (e) => take(JSON.parse((e as MessageEvent).data), false));
  events.onerror = async () => {
    // EventSource reconnects by itself (and the log then starts over), unless the
    // session ended or the appliance is gone: ask which.
    try {
      await call(
        `reading ${name}'s serial log`,
        api.api.appliances[":name"].$get({ param: { name } }),
      );
      consoleError.value = `the serial log of ${name} stopped streaming; reconnecting…`;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        events.close();
        return sessionLost();
      }
      if (err instanceof ApiError && err.status === 404) events.close();
      consoleError.value = (err as Error).message;
    }
  };
  return () => events.close();
}

/** Types one line into `name`'s serial console. */
export async function sendLine(name: string, line: string): Promise<void> {
  try {
    await call(
      `typing into ${name}'s console`,
      api.api.appliances[":name"].console.$post({ param: { name }, json: { line } }),
    );
    consoleError.value = null;
  } catch (err) {
    consoleError.value = (err as Error).message;
  }
}

/** What the UI uses of noVNC's RFB (the package has no types). */
interface Rfb extends EventTarget {
  scaleViewport: boolean;
  focusOnClick: boolean;
  focus(): void;
  disconnect(): void;
}

let _rfb: Rfb | null = null;

/** Shows `name`'s screen in `target`; returns the function that disconnects. */
export function attachScreen(target: HTMLElement, name: string): () => void {
  const url = `${location.origin.replace(/^http/, "ws")}/api/appliances/${
    encodeURIComponent(name)
  }/vnc`;
  screen.value = "connecting";
  screenError.value = null;
  // deno-lint-ignore no-explicit-any
  const rfb: Rfb = new (RFB as any)(target, url, { wsProtocols: ["binary"] });
  rfb.scaleViewport = true;
  rfb.focusOnClick = true;
  rfb.addEventListener("connect", () => {
    screen.value = "connected";
    // noVNC's canvas is not in the tab order: put it there so the keyboard reaches it.
    const canvas = target.querySelector("canvas");
    if (canvas) {
      canvas.tabIndex = 0;
      canvas.setAttribute("aria-label", `${name}'s screen: focus it to type into it`);
    }
  });
  rfb.addEventListener("disconnect", (e) => {
    screen.value = "disconnected";
    if (!(e as CustomEvent<{ clean: boolean }>).detail.clean) {
      screenError.value = `the connection to ${name}'s screen was lost: it comes back when ` +
        `${name} runs again, or reload the page`;
    }
  });
  _rfb = rfb;
  return () => {
    if (_rfb === rfb) _rfb = null;
    rfb.disconnect();
    screen.value = "off";
  };
}

/** Moves the keyboard focus to the screen. */
export function focusScreen(): void {
  _rfb?.focus();
}
