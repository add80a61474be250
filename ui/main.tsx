/** @jsxImportSource preact */
/// <reference lib="dom" />
/**
 * The browser UI's entry. A sign-in URL (`/signin#token=...`) is traded for a session
 * cookie at once, and the token is wiped from the address bar and history.
 *
 * @module
 */

import { render } from "preact";
import { App } from "./app.tsx";
import { checkSession, signIn } from "./models/session.ts";
import { loadDirectory } from "./models/user.ts";

const token = /^#token=(.+)$/.exec(location.hash)?.[1];
if (token !== undefined || location.pathname === "/signin") history.replaceState(null, "", "/#/");
loadDirectory();
if (token !== undefined) signIn(decodeURIComponent(token));
else checkSession();

render(<App />, document.getElementById("app")!);
