/// <reference lib="dom" />
/**
 * vat's own update, as one line for the header: read from `GET /api/update` every 15 s
 * (every second while a release downloads). A daemon without a release repository
 * answers 404, and the line stays empty.
 *
 * @module
 */

import { signal } from "@preact/signals";
import { api, ApiError, call } from "../api.ts";
import { describeUpdate } from "../format.ts";
import type { UpdateStatus } from "../../vat/api/wire_types.ts";

/** The header's update line, or null when there is nothing to say. */
export const updateLine = signal<string | null>(null);

/** Starts reading the update status; returns the function that stops it. */
export function followUpdate(): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const poll = async () => {
    let delayMs = 15_000;
    try {
      const status = await call<UpdateStatus>("reading the update status", api.api.update.$get());
      updateLine.value = describeUpdate(status);
      if (status.state === "downloading") delayMs = 1000;
    } catch (err) {
      updateLine.value = null;
      if (err instanceof ApiError && err.status === 404) return;
    }
    if (!stopped) timer = setTimeout(poll, delayMs);
  };
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
