/** @jsxImportSource preact */
import type { Signal } from "@preact/signals";
import { useEffect, useRef } from "preact/hooks";

/** Props of `SerialConsole`. */
export interface SerialConsoleProps {
  name: string;
  log: Signal<string>;
  error: Signal<string | null>;
  /** Whether the appliance runs (a line can be typed only then). */
  running: boolean;
  /** Whether the panel shows (it follows the log's end when it comes into view). */
  shown: boolean;
  onSend(line: string): void;
}

/** How close to the end (in pixels) still counts as reading the end. */
const _AT_END_PX = 24;

/**
 * The serial console's log as it grows, and a line to type into it. The log follows
 * its end while the reader is there; scrolled up to read, it stays put.
 */
export function SerialConsole({ name, log, error, running, shown, onSend }: SerialConsoleProps) {
  const pre = useRef<HTMLPreElement>(null);
  // Whether the reader was at the end before the text grew (not state: a scroll fact).
  const atEnd = useRef(true);
  const text = log.value;
  useEffect(() => {
    const el = pre.current;
    if (el && atEnd.current) el.scrollTop = el.scrollHeight;
  }, [text, shown]);
  return (
    <section class="serial" aria-label={`${name}'s serial log`}>
      <pre
        ref={pre}
        tabIndex={0}
        role="log"
        aria-label={`${name}'s serial console output`}
        data-testid="serial-log"
        onScroll={(e) => {
          const el = e.currentTarget;
          atEnd.current = el.scrollHeight - el.scrollTop - el.clientHeight < _AT_END_PX;
        }}
      >{text || <span class="muted">Nothing printed yet.</span>}</pre>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const input = e.currentTarget.elements.namedItem("line") as HTMLInputElement;
          onSend(input.value);
          input.value = "";
        }}
      >
        <label for="serial-line">Type a line</label>
        <input id="serial-line" name="line" autocomplete="off" disabled={!running} />
        <button type="submit" disabled={!running}>Send</button>
        {!running && <span class="muted">Start {name} to type into its console.</span>}
      </form>
      {error.value && <p class="error" role="alert">{error}</p>}
    </section>
  );
}
