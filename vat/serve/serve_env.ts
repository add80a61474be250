/**
 * The Hono environment shared by the repository server's middleware and routes.
 *
 * @module
 */

import type { Context } from "hono";
import type { ObjectPath } from "./object_path.ts";
import type { SignedUpload } from "./write_authorisation.ts";

/** Bindings and per-request variables of the repository server. */
export type ServeEnv = {
  Bindings: {
    /** The peer, when the app runs under `Deno.serve` (absent in `app.request()`). */
    remoteAddr?: Deno.Addr;
  };
  Variables: {
    /** The request's object path, parsed and checked by `objectPath()`. */
    objectPath: ObjectPath;
    /** A write's body, streaming in, its signature checked by `writeAuthorisation()`. */
    upload: SignedUpload;
    /**
     * The publisher key a write names; verified (signature, and the key's right to
     * write there) before any route handler runs.
     */
    publisherKey: string;
  };
};

/** A request context of the repository server. */
export type ServeContext = Context<ServeEnv>;
