/** @jsxImportSource preact */
import type { Signal } from "@preact/signals";
import { useEffect, useRef } from "preact/hooks";

/** Props of `SerialConsole`. */
export interface SerialConsoleProps {
  name: string;
  log: Signal<string>;
  error: Signal<string | null>;
  onSend(line: string): void;
}

/** The serial console's log (kept scrolled to its end) and a line to type into it. */
export function SerialConsole({ name, log, error, onSend }: SerialConsoleProps) {
  const pre = useRef<HTMLPreElement>(null);
  const text = log.value;
  useEffect(() => {
    if (pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [text]);
  return (
    <section class="serial" aria-label={`${name}'s serial console`}>
      <h3>Serial console</h3>
      <pre ref={pre} tabIndex={0} data-testid="serial-log">{text}</pre>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const input = e.currentTarget.elements.namedItem("line") as HTMLInputElement;
          onSend(input.value);
          input.value = "";
        }}
      >
        <label for="serial-line">Type a line</label>
        <input id="serial-line" name="line" autocomplete="off" />
        <button type="submit">Send</button>
      </form>
      {error.value && <p class="error" role="alert">{error}</p>}
    </section>
  );
}
