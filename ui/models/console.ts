/// <reference lib="dom" />
/**
 * The open appliance's console: its serial log (polled while the page shows), a line
 * typed into it, and the state of its screen (noVNC over the daemon's proxy).
 *
 * @module
 */

import { signal } from "@preact/signals";
import RFB from "@novnc/novnc";
import { api, ApiError, call } from "../api.ts";
import { sessionLost } from "./session.ts";

const POLL_MS = 1000;

/** The serial console's log. */
export const serialLog = signal("");
/** Why the log or a typed line failed. */
export const consoleError = signal<string | null>(null);
/** The screen's connection. */
export const screen = signal<"off" | "connecting" | "connected" | "disconnected">("off");
/** Why the screen disconnected. */
export const screenError = signal<string | null>(null);

/** Polls `name`'s serial log; returns the function that stops. */
export function followSerialLog(name: string): () => void {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  serialLog.value = "";
  consoleError.value = null;
  const poll = async () => {
    try {
      const text = await call<string>(
        `reading ${name}'s console`,
        api.api.appliances[":name"].console.$get({ param: { name } }),
      );
      if (!stopped && text !== serialLog.value) serialLog.value = text;
      if (!stopped) consoleError.value = null;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return sessionLost();
      if (!stopped) consoleError.value = (err as Error).message;
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  };
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
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
      screenError.value = `the connection to ${name}'s screen was lost`;
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
