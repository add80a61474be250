/**
 * `daemon.json` in a state directory: where its running daemon listens, so that the
 * CLI (and anyone else on the machine with access to the directory) finds it. The
 * daemon writes it once its API listens and removes it when it stops.
 *
 * @module
 */

/** What a running daemon publishes in `daemon.json` for the CLI. */
export interface DaemonInfo {
  url: string;
  pid: number;
  stateDir: string;
  startedAt: string;
}

/** Reads `daemon.json` of a state directory; null when no daemon is running there. */
export async function readDaemonInfo(stateDir: string): Promise<DaemonInfo | null> {
  let info: DaemonInfo;
  try {
    info = JSON.parse(await Deno.readTextFile(`${stateDir}/daemon.json`));
  } catch {
    return null;
  }
  return _alive(info.pid) ? info : null;
}

function _alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}
