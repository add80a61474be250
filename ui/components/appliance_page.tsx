/** @jsxImportSource preact */
import type { Signal } from "@preact/signals";
import type { ApplianceHeatMap, ApplianceStatus, SnapshotEntry } from "../api.ts";
import type { Operation } from "../models/appliances.ts";
import type { ApplianceTab } from "../models/route.ts";
import { ApplianceCard } from "./appliance_card.tsx";
import { HeatMap } from "./heat_map.tsx";
import { SerialConsole } from "./serial_console.tsx";
import { SnapshotList } from "./snapshot_list.tsx";
import { VncScreen } from "./vnc_screen.tsx";

/** Props of `AppliancePage`. */
export interface AppliancePageProps {
  name: string;
  appliance: ApplianceStatus | undefined;
  pending?: string;
  /** The tab that shows. */
  tab: ApplianceTab;
  screen: Signal<string>;
  screenError: Signal<string | null>;
  serialLog: Signal<string>;
  consoleError: Signal<string | null>;
  attachScreen(target: HTMLElement, name: string): () => void;
  onFocusScreen(): void;
  onSend(line: string): void;
  onOperate(name: string, op: Operation): void;
  onDelete(name: string): void;
  onHoard(name: string, on: boolean): void;
  onTab(name: string, tab: ApplianceTab): void;
  /** The user disk's snapshots (newest first; null until read). */
  snapshots: Signal<SnapshotEntry[] | null>;
  snapshotsError: Signal<string | null>;
  snapshotsBusy: Signal<"backing-up" | "undoing" | null>;
  onBackUpNow(name: string): void;
  onUndo(entry: SnapshotEntry): void;
  /** The disks' access heat map, live while the appliance runs. */
  heatMap: Signal<ApplianceHeatMap | null>;
}

const _TABS: [ApplianceTab, string][] = [["screen", "Console"], ["serial", "Serial log"]];

/**
 * One appliance, two tabs: its screen (the console, noVNC) and its serial log, and its
 * user disk's snapshots. Both panels stay mounted, so the screen keeps its connection
 * and the log keeps streaming behind the other tab.
 */
export function AppliancePage(p: AppliancePageProps) {
  const a = p.appliance;
  if (!a) {
    return (
      <main>
        <p>
          <a href="#/">← All appliances</a>
        </p>
        <p class="error" role="alert">
          There is no appliance "{p.name}" on this VAT: go back to the list, or add it with{" "}
          <code>vat appliance add REPO --name {p.name}</code>.
        </p>
      </main>
    );
  }
  // Arrow keys, Home and End move between the tabs (the ARIA tabs pattern).
  const onTabKey = (e: KeyboardEvent) => {
    const at = _TABS.findIndex(([t]) => t === p.tab);
    const to = e.key === "ArrowRight"
      ? (at + 1) % _TABS.length
      : e.key === "ArrowLeft"
      ? (at + _TABS.length - 1) % _TABS.length
      : e.key === "Home"
      ? 0
      : e.key === "End"
      ? _TABS.length - 1
      : -1;
    if (to < 0) return;
    e.preventDefault();
    p.onTab(a.name, _TABS[to][0]);
    document.getElementById(`tab-${_TABS[to][0]}`)?.focus();
  };
  return (
    <main class="page">
      <p>
        <a href="#/">← All appliances</a>
      </p>
      <ApplianceCard
        appliance={a}
        pending={p.pending}
        onOperate={p.onOperate}
        onDelete={p.onDelete}
        onHoard={p.onHoard}
      />
      <div class="tabs" role="tablist" aria-label={`${a.name}'s console`} onKeyDown={onTabKey}>
        {_TABS.map(([tab, label]) => (
          <button
            key={tab}
            type="button"
            role="tab"
            id={`tab-${tab}`}
            aria-selected={p.tab === tab}
            aria-controls={`panel-${tab}`}
            tabIndex={p.tab === tab ? 0 : -1}
            onClick={() => p.onTab(a.name, tab)}
          >
            {label}
          </button>
        ))}
      </div>
      <section
        class="screen"
        id="panel-screen"
        role="tabpanel"
        aria-labelledby="tab-screen"
        hidden={p.tab !== "screen"}
      >
        <p class="muted">
          {a.name}'s screen: <span data-testid="screen-state">{p.screen}</span>
        </p>
        {a.screenId === null ? <p class="muted">The screen shows while {a.name} runs.</p> : (
          <>
            <button type="button" onClick={p.onFocusScreen}>Type into the screen</button>
            <VncScreen key={a.screenId} name={a.name} attach={p.attachScreen} />
          </>
        )}
        {p.screenError.value && <p class="error" role="alert">{p.screenError}</p>}
      </section>
      <div
        id="panel-serial"
        role="tabpanel"
        aria-labelledby="tab-serial"
        hidden={p.tab !== "serial"}
      >
        <SerialConsole
          name={a.name}
          log={p.serialLog}
          error={p.consoleError}
          running={a.state === "running"}
          shown={p.tab === "serial"}
          onSend={p.onSend}
        />
      </div>
      <HeatMap map={p.heatMap.value} running={a.state === "running"} />
      <SnapshotList
        appliance={a}
        snapshots={p.snapshots}
        error={p.snapshotsError}
        busy={p.snapshotsBusy}
        onBackUpNow={p.onBackUpNow}
        onUndo={p.onUndo}
      />
    </main>
  );
}
