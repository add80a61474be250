/** @jsxImportSource preact */
import type { ApplianceStatus } from "../api.ts";
import type { Operation } from "../models/appliances.ts";
import { applianceHref } from "../models/route.ts";
import { ApplianceCard } from "./appliance_card.tsx";

/** Props of `ApplianceList`. */
export interface ApplianceListProps {
  appliances: ApplianceStatus[];
  pending: Record<string, string>;
  onOperate(name: string, op: Operation): void;
  onDelete(name: string): void;
  onHoard(name: string, on: boolean): void;
}

/** Every appliance of the VAT. */
export function ApplianceList(
  { appliances, pending, onOperate, onDelete, onHoard }: ApplianceListProps,
) {
  if (appliances.length === 0) {
    return (
      <p>
        No appliances yet: add one with <code>vat appliance add REPO</code>.
      </p>
    );
  }
  return (
    <section class="list" aria-label="Appliances">
      {appliances.map((a) => (
        <ApplianceCard
          key={a.name}
          appliance={a}
          pending={pending[a.name]}
          href={applianceHref(a.name)}
          onOperate={onOperate}
          onDelete={onDelete}
          onHoard={onHoard}
        />
      ))}
    </section>
  );
}
