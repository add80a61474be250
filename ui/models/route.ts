/// <reference lib="dom" />
/**
 * Which screen shows, from the URL's fragment: `#/` the appliance list,
 * `#/appliance/NAME` one appliance and its console.
 *
 * @module
 */

import { signal } from "@preact/signals";

/** A screen of the UI. */
export type Route = { page: "list" } | { page: "appliance"; name: string };

function _parse(hash: string): Route {
  const match = /^#\/appliance\/(.+)$/.exec(hash);
  return match ? { page: "appliance", name: decodeURIComponent(match[1]) } : { page: "list" };
}

/** The screen that shows now. */
export const route = signal<Route>(_parse(location.hash));

addEventListener("hashchange", () => route.value = _parse(location.hash));

/** The link to an appliance's page. */
export function applianceHref(name: string): string {
  return `#/appliance/${encodeURIComponent(name)}`;
}
