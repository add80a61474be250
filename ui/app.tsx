/** @jsxImportSource preact */
/**
 * The UI's shell: wires the models (live state) to the presentational components.
 *
 * @module
 */

import { useEffect } from "preact/hooks";
import * as list from "./models/appliances.ts";
import * as consoleModel from "./models/console.ts";
import * as snapshotsModel from "./models/snapshots.ts";
import * as heatMapModel from "./models/heat_map.ts";
import { route, showTab } from "./models/route.ts";
import { session, signIn, signInError, signingIn, signOut } from "./models/session.ts";
import { AppliancePage } from "./components/appliance_page.tsx";
import { ApplianceList } from "./components/appliance_list.tsx";
import { ConfirmDelete } from "./components/confirm_delete.tsx";
import { ConfirmUndo } from "./components/confirm_undo.tsx";
import { StartConflict } from "./components/start_conflict.tsx";
import { SignInScreen } from "./components/sign_in_screen.tsx";

/** The whole UI. */
export function App() {
  if (session.value === "unknown") return <p class="loading">Connecting to the VAT…</p>;
  if (session.value === "signed-out") {
    return <SignInScreen error={signInError} busy={signingIn} onSignIn={signIn} />;
  }
  return <SignedIn />;
}

function SignedIn() {
  useEffect(() => list.followEvents(), []);
  const r = route.value;
  const name = r.page === "appliance" ? r.name : null;
  useEffect(() => name === null ? undefined : consoleModel.followSerialLog(name), [name]);
  const shown = name === null ? undefined : list.appliances.value.find((a) => a.name === name);
  const running = shown?.state === "running";
  useEffect(
    () => name === null || !running ? undefined : heatMapModel.followHeatMap(name),
    [name, running],
  );
  // The snapshots are read again whenever the backup commits or queues one, or the
  // subscription comes or goes; the status stream says when.
  const listable = shown !== undefined && shown.backup.enabled && shown.subscribed;
  useEffect(() => {
    if (name !== null && listable) snapshotsModel.loadSnapshots(name);
    else snapshotsModel.clearSnapshots(name);
  }, [
    name,
    listable,
    shown?.backup.series,
    shown?.backup.lastVersion,
    shown?.backup.pendingSnapshots,
  ]);
  const asked = list.deleteAsked.value;
  const conflict = list.startConflict.value;
  const undo = snapshotsModel.undoAsked.value;
  return (
    <>
      <header class="top">
        <h1>
          <a href="#/">VAT</a>
        </h1>
        <span class={`stream stream-${list.stream}`} data-testid="stream" role="status">
          {list.stream.value === "live"
            ? "live"
            : list.stream.value === "lost"
            ? "connection to the daemon lost, retrying…"
            : "connecting…"}
        </span>
        <button type="button" onClick={signOut}>Sign out</button>
      </header>
      {list.actionError.value && (
        <div class="error banner" role="alert">
          <p>{list.actionError}</p>
          <button type="button" onClick={list.dismissError}>Dismiss</button>
        </div>
      )}
      {asked !== null && (
        <ConfirmDelete
          name={asked}
          backup={list.appliances.value.find((a) => a.name === asked)?.backup ?? null}
          onConfirm={list.confirmDelete}
          onCancel={list.cancelDelete}
        />
      )}
      {conflict !== null && (
        <StartConflict
          name={conflict.name}
          holder={conflict.holder}
          onChoose={list.startHere}
          onCancel={list.cancelStart}
        />
      )}
      {undo !== null && name !== null && (
        <ConfirmUndo
          name={name}
          entry={undo}
          onConfirm={() => snapshotsModel.confirmUndo(name)}
          onCancel={snapshotsModel.cancelUndo}
        />
      )}
      {name === null
        ? (
          <main>
            <ApplianceList
              appliances={list.appliances.value}
              pending={list.pending.value}
              onOperate={list.operate}
              onDelete={list.askDelete}
              onHoard={list.hoard}
            />
          </main>
        )
        : (
          <AppliancePage
            name={name}
            tab={r.page === "appliance" ? r.tab : "screen"}
            appliance={shown}
            pending={list.pending.value[name]}
            screen={consoleModel.screen}
            screenError={consoleModel.screenError}
            serialLog={consoleModel.serialLog}
            consoleError={consoleModel.consoleError}
            attachScreen={consoleModel.attachScreen}
            onFocusScreen={consoleModel.focusScreen}
            onSend={(line) => consoleModel.sendLine(name, line)}
            onOperate={list.operate}
            onDelete={list.askDelete}
            onHoard={list.hoard}
            onTab={showTab}
            snapshots={snapshotsModel.snapshots}
            snapshotsError={snapshotsModel.snapshotsError}
            snapshotsBusy={snapshotsModel.snapshotsBusy}
            onBackUpNow={snapshotsModel.backUpNow}
            onUndo={snapshotsModel.askUndo}
            heatMap={heatMapModel.heatMap}
          />
        )}
    </>
  );
}
