/// <reference lib="dom" />
/**
 * The open appliance's access heat map, streamed from
 * `/api/appliances/NAME/stats/stream` (a map a second) while its page shows.
 *
 * @module
 */

import { signal } from "@preact/signals";
import type { ApplianceHeatMap } from "../api.ts";

/** The last map streamed (null before the first, or for another appliance). */
export const heatMap = signal<ApplianceHeatMap | null>(null);

/** Follows `name`'s heat map; returns the function that stops. */
export function followHeatMap(name: string): () => void {
  heatMap.value = null;
  const events = new EventSource(`/api/appliances/${encodeURIComponent(name)}/stats/stream`);
  events.addEventListener("stats", (e) => {
    heatMap.value = JSON.parse((e as MessageEvent<string>).data);
  });
  // EventSource reconnects by itself; the appliance list's stream notices a lost session.
  return () => events.close();
}
