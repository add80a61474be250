/**
 * The JSON the daemon's API answers with, by name: what the CLI and the browser UI
 * import to read it (never the domain's modules themselves). The shapes are defined
 * beside the code that makes them; this module is the API's contract with its clients.
 *
 * @module
 */

export type { ApplianceStatus } from "../appliance/appliances.ts";
export type { ApplianceHeatMap, DiskHeatMap } from "../appliance/heat_map.ts";
export type { BackupStatus, SnapshotEntry } from "../backup/subscription_backup.ts";
export type { AccelDecision } from "../vmm/accelerator.ts";
