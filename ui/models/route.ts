/// <reference lib="dom" />
/**
 * Which screen shows, from the URL's fragment: `#/` the appliance list,
 * `#/appliance/NAME` one appliance and its screen, `#/appliance/NAME/serial` the same
 * page with its serial log.
 *
 * @module
 */

import { signal } from "@preact/signals";

/** The tabs of an appliance's page. */
export type ApplianceTab = "screen" | "serial";

/** A screen of the UI. */
export type Route = { page: "list" } | { page: "appliance"; name: string; tab: ApplianceTab };

function _parse(hash: string): Route {
  const match = /^#\/appliance\/([^/]+)(\/serial)?$/.exec(hash);
  return match
    ? { page: "appliance", name: decodeURIComponent(match[1]), tab: match[2] ? "serial" : "screen" }
    : { page: "list" };
}

/** The screen that shows now. */
export const route = signal<Route>(_parse(location.hash));

addEventListener("hashchange", () => route.value = _parse(location.hash));

/** The link to an appliance's page (on `tab`). */
export function applianceHref(name: string, tab: ApplianceTab = "screen"): string {
  return `#/appliance/${encodeURIComponent(name)}${tab === "serial" ? "/serial" : ""}`;
}

/** Shows another tab of the appliance's page (the browser's Back returns). */
export function showTab(name: string, tab: ApplianceTab): void {
  location.hash = applianceHref(name, tab);
}
