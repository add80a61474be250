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
import { followUpdate, updateLine } from "./models/update.ts";
import { route, showTab } from "./models/route.ts";
import { session, signIn, signInError, signingIn, signOut } from "./models/session.ts";
import { AppliancePage } from "./components/appliance_page.tsx";
import { ApplianceList } from "./components/appliance_list.tsx";
import { ConfirmDelete } from "./components/confirm_delete.tsx";
import { ConfirmUndo } from "./components/confirm_undo.tsx";
import { StartConflict } from "./components/start_conflict.tsx";
import { SignInScreen } from "./components/sign_in_screen.tsx";
import { LoginScreen } from "./components/login_screen.tsx";
import { ChangePassword, ConfirmLogout, ShowRecovery } from "./components/user_dialogs.tsx";
import * as user from "./models/user.ts";

/** The whole UI. */
export function App() {
  const dir = user.directory.value;
  if (session.value === "unknown" || dir === null) {
    return <p class="loading">Connecting to the VAT…</p>;
  }
  if (session.value === "signed-out") {
    if (dir.directory) {
      return (
        <LoginScreen
          error={user.loginError}
          busy={user.loggingIn}
          reachable={dir.reachable !== false}
          leaving={user.leaving.value}
          onLogIn={user.logIn}
        />
      );
    }
    return <SignInScreen error={signInError} busy={signingIn} onSignIn={signIn} />;
  }
  return <SignedIn />;
}

function SignedIn() {
  useEffect(() => list.followEvents(), []);
  useEffect(() => followUpdate(), []);
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
  useEffect(() => {
    if (user.directory.value?.directory) user.loadMe();
  }, []);
  const who = user.me.value?.user ?? null;
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
        {updateLine.value && (
          <span class="update-line" data-testid="update-line" role="status">{updateLine}</span>
        )}
        {who
          ? (
            <span class="who">
              <span data-testid="who">
                {who.displayName}
                {who.offline ? " (offline)" : ""}
              </span>
              <button type="button" onClick={() => (user.passwordAsked.value = true)}>
                Change password
              </button>
              <button type="button" onClick={() => (user.recoveryAsked.value = true)}>
                Recovery key
              </button>
              <button type="button" onClick={() => (user.logoutAsked.value = true)}>Log out</button>
            </span>
          )
          : <button type="button" onClick={signOut}>Sign out</button>}
      </header>
      {user.logoutAsked.value && (
        <ConfirmLogout
          busy={user.dialogBusy}
          error={user.dialogError}
          onLogOut={user.logOut}
          onCancel={user.closeDialogs}
        />
      )}
      {user.passwordAsked.value && (
        <ChangePassword
          busy={user.dialogBusy}
          error={user.dialogError}
          done={user.passwordChanged}
          onChange={user.changePassword}
          onCancel={user.closeDialogs}
        />
      )}
      {user.recoveryAsked.value && (
        <ShowRecovery
          busy={user.dialogBusy}
          error={user.dialogError}
          recoveryKey={user.recoveryKey}
          onMake={user.makeRecoveryKey}
          onCancel={user.closeDialogs}
        />
      )}
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
