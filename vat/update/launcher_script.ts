/**
 * The launcher, `INSTALL/vat-launcher.sh` (docs/UPDATE.md, "The launcher"): a POSIX
 * shell script the updater writes beside the slots. It is the VAT's boot loader: it
 * starts the slot `next` names while that has boot attempts left (taking one away
 * before each start, as RAUC and ChromeOS count attempts down), else `current`; it
 * marks a trial slot good (makes it `current`) only when the daemon it started wrote
 * `healthy` (after answering its own GET /api/health) within the time limit and then
 * stayed up for a while, and otherwise stops it and tries again; when the attempts are used up it records the
 * release in `failed` and goes back to `current`. It also restarts vat when it exits
 * with 75 (a staged release is waiting) or crashes, and stops with it on a signal.
 *
 * Every state file is one short line replaced by rename (`mv`), so a crash or power
 * loss at any point leaves either the old or the new line.
 *
 * @module
 */

/** The exit code by which vat asks its launcher to start it again (into `next`). */
export const RESTART_EXIT_CODE = 75;

/** Boot attempts a staged release gets before the launcher rolls back. */
export const BOOT_ATTEMPTS = 3;

/** The script's text. */
export const LAUNCHER_SCRIPT = `#!/bin/sh
# vat's launcher (docs/UPDATE.md). Written by vat's updater; do not edit.
# usage: vat-launcher.sh [vat daemon flags...]
# env: VAT_HEALTH_TIMEOUT (seconds a trial gets to answer its health check, default 60),
#      VAT_HEALTH_SETTLE (seconds it must then stay up before it is marked good, default 10)
set -u
dir=$(cd "$(dirname "$0")" && pwd)
health_timeout=\${VAT_HEALTH_TIMEOUT:-60}
settle=\${VAT_HEALTH_SETTLE:-10}
log() { echo "vat-launcher: $*" >&2; }
# put FILE LINE: replaces FILE by a file holding LINE, atomically and durably.
put() {
  printf '%s\\n' "$2" > "$1.tmp" || exit 1
  sync "$1.tmp" 2>/dev/null || sync
  mv -f "$1.tmp" "$1" || exit 1
  sync "$dir" 2>/dev/null || true
}
release_of() { sed -n 's/.*"release": *\\([0-9]*\\).*/\\1/p' "$dir/$1/release.json" 2>/dev/null | head -n 1; }
version_of() { sed -n 's/.*"vatVersion": *"\\([^"]*\\)".*/\\1/p' "$dir/$1/release.json" 2>/dev/null | head -n 1; }

stopping=0
pid=""
trap 'stopping=1; [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null' TERM INT HUP

# stop_child: TERM, then KILL after 10 s, and reap it.
stop_child() {
  kill -TERM "$pid" 2>/dev/null
  n=0
  while kill -0 "$pid" 2>/dev/null && [ $n -lt 50 ]; do sleep 0.2; n=$((n + 1)); done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  pid=""
}

while [ $stopping = 0 ]; do
  slot=""
  trial=0
  if [ -f "$dir/next" ]; then
    read -r nslot left < "$dir/next" || left=0
    case "$nslot" in A|B|C) ;; *) nslot=""; left=0 ;; esac
    case "$left" in ''|*[!0-9]*) left=0 ;; esac
    if [ "$left" -gt 0 ] && [ -f "$dir/$nslot/release.json" ]; then
      put "$dir/next" "$nslot $((left - 1))"
      slot=$nslot
      trial=1
      log "trying slot $slot (release $(release_of "$slot"), vat $(version_of "$slot")); $((left - 1)) attempts left after this one"
    else
      if [ -n "$nslot" ]; then
        log "slot $nslot (release $(release_of "$nslot")) did not prove itself: rolling back"
        put "$dir/failed" "$(release_of "$nslot")"
      fi
      rm -f "$dir/next"
    fi
  fi
  if [ -z "$slot" ]; then
    # (A missing file is tested first: the shell reports a failed redirection itself.)
    if [ ! -f "$dir/current" ] || ! read -r slot < "$dir/current"; then
      log "nothing to start: $dir has no current slot and no next slot with attempts left"
      exit 1
    fi
    case "$slot" in
      A|B|C) ;;
      *) log "nothing to start: $dir/current names no slot ('$slot')"; exit 1 ;;
    esac
  fi
  rm -f "$dir/healthy"
  VAT_INSTALL_DIR=$dir VAT_SLOT=$slot "$dir/$slot/launch" "$@" &
  pid=$!
  if [ $trial = 1 ]; then
    ok=0
    n=0
    while [ $n -lt $((health_timeout * 5)) ] && [ $stopping = 0 ]; do
      if [ "$(cat "$dir/healthy" 2>/dev/null)" = "$slot $pid" ]; then ok=1; break; fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
      n=$((n + 1))
    done
    # Answering once is not enough: it must stay up a while (a crash soon after start
    # counts as a failed attempt, as ChromeOS marks a kernel good only 45 s after boot).
    n=0
    while [ $ok = 1 ] && [ $n -lt $((settle * 5)) ] && [ $stopping = 0 ]; do
      kill -0 "$pid" 2>/dev/null || ok=0
      sleep 0.2
      n=$((n + 1))
    done
    [ $stopping = 1 ] && ok=0
    if [ $ok = 1 ]; then
      put "$dir/current" "$slot"
      rm -f "$dir/next"
      sync "$dir" 2>/dev/null || sync
      log "slot $slot (vat $(version_of "$slot")) answered its health check: it is current now"
    else
      [ $stopping = 0 ] && log "slot $slot did not answer its health check within \${health_timeout} s and stay up \${settle} s"
      stop_child
      continue
    fi
  fi
  code=0
  while [ -n "$pid" ]; do
    wait "$pid"
    code=$?
    # A trapped signal ends wait early: wait again until vat has really exited.
    kill -0 "$pid" 2>/dev/null || pid=""
  done
  [ $stopping = 1 ] && exit 0
  case $code in
    0) exit 0 ;;
    75) log "vat asked to be started again (a staged release)" ;;
    *) log "vat exited with $code; starting it again in 1 s"; sleep 1 ;;
  esac
done
exit 0
`;
