/** @jsxImportSource preact */
import { useEffect, useRef } from "preact/hooks";

/** Props of `VncScreen`. */
export interface VncScreenProps {
  name: string;
  /** Connects noVNC to the element; returns the disconnect. */
  attach(target: HTMLElement, name: string): () => void;
}

/** The place where noVNC draws an appliance's screen (its state is in the console model). */
export function VncScreen({ name, attach }: VncScreenProps) {
  const target = useRef<HTMLDivElement>(null);
  useEffect(() => attach(target.current!, name), [name]);
  return <div class="vnc" ref={target} data-testid="vnc" />;
}
