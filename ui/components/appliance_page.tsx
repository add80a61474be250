/** @jsxImportSource preact */
import type { Signal } from "@preact/signals";
import type { ApplianceStatus } from "../api.ts";
import type { Operation } from "../models/appliances.ts";
import { ApplianceCard } from "./appliance_card.tsx";
import { SerialConsole } from "./serial_console.tsx";
import { VncScreen } from "./vnc_screen.tsx";

/** Props of `AppliancePage`. */
export interface AppliancePageProps {
  name: string;
  appliance: ApplianceStatus | undefined;
  pending?: string;
  screen: Signal<string>;
  screenError: Signal<string | null>;
  serialLog: Signal<string>;
  consoleError: Signal<string | null>;
  attachScreen(target: HTMLElement, name: string): () => void;
  onFocusScreen(): void;
  onSend(line: string): void;
  onOperate(name: string, op: Operation): void;
  onDelete(name: string): void;
}

/** One appliance, its screen and its serial console. */
export function AppliancePage(p: AppliancePageProps) {
  const a = p.appliance;
  if (!a) {
    return (
      <main>
        <p>
          <a href="#/">← All appliances</a>
        </p>
        <p class="error" role="alert">There is no appliance "{p.name}" on this VAT.</p>
      </main>
    );
  }
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
      />
      <section class="screen" aria-label={`${a.name}'s screen`}>
        <h3>
          Screen <span class="muted" data-testid="screen-state">({p.screen})</span>
        </h3>
        {a.vncWebsocketPort === null
          ? <p class="muted">The screen shows while {a.name} runs.</p>
          : (
            <>
              <button type="button" onClick={p.onFocusScreen}>Type into the screen</button>
              <VncScreen key={a.vncWebsocketPort} name={a.name} attach={p.attachScreen} />
            </>
          )}
        {p.screenError.value && <p class="error" role="alert">{p.screenError}</p>}
      </section>
      <SerialConsole
        name={a.name}
        log={p.serialLog}
        error={p.consoleError}
        onSend={p.onSend}
      />
    </main>
  );
}
