/**
 * The browser UI's routes: the page (at `/` and `/signin`, where the daemon's sign-in
 * URL points) and its built script and style sheet. None of them holds a secret, so
 * they need no session; everything they show comes from the API, which does.
 *
 * @module
 */

import { Hono } from "hono";
import { UI_FILES } from "./build_ui.ts";
import { loadUiAssets } from "./ui_assets.ts";

const _PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>VAT</title>
<link rel="stylesheet" href="/ui/${UI_FILES.css}">
<script type="module" src="/ui/${UI_FILES.js}"></script>
</head>
<body><div id="app"><p class="loading">Loading the VAT…</p></div>
<noscript>The VAT's UI needs JavaScript.</noscript></body>
</html>
`;

const _PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  // Only our own script, styles and connections (the API, its events, the console's
  // WebSocket); no framing (clickjacking); the page's URL may carry the sign-in token.
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self' " +
    "'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; " +
    "base-uri 'none'; form-action 'self'",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
  "cache-control": "no-store",
};

/** The UI's routes, for the daemon's root app. */
export function uiRoutes() {
  return new Hono()
    .get("/", (c) => c.body(_PAGE, 200, _PAGE_HEADERS))
    .get("/signin", (c) => c.body(_PAGE, 200, _PAGE_HEADERS))
    .get(`/ui/${UI_FILES.js}`, async (c) =>
      c.body((await loadUiAssets()).js, 200, {
        "content-type": "text/javascript; charset=utf-8",
        "cache-control": "no-cache",
        "x-content-type-options": "nosniff",
      }))
    .get(`/ui/${UI_FILES.css}`, async (c) =>
      c.body((await loadUiAssets()).css, 200, {
        "content-type": "text/css; charset=utf-8",
        "cache-control": "no-cache",
        "x-content-type-options": "nosniff",
      }));
}
