/**
 * The `Appliances` of whoever is logged in, as one object for the API.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import type { Appliances } from "../appliance/appliances.ts";
import type { DirectoryUsers } from "./directory_users.ts";

/**
 * The `Appliances` the API acts on in a VAT with a directory: always the logged-in
 * user's. With nobody logged in the list is empty and everything else is refused.
 * Change events come from `users`, which forwards those of whoever is logged in.
 */
export function currentUsersAppliances(users: DirectoryUsers): Appliances {
  return new Proxy({} as Appliances, {
    get(_, prop) {
      if (prop === "addEventListener" || prop === "removeEventListener") {
        return (users[prop] as (...a: unknown[]) => unknown).bind(users);
      }
      const current = users.current?.appliances;
      if (!current) {
        if (prop === "list") return () => Promise.resolve([]);
        if (prop === "runningNames") return () => [];
        return () => {
          throw new UsageError("nobody is logged in on this VAT (log in first: vat login NAME)");
        };
      }
      const value = (current as unknown as Record<string | symbol, unknown>)[prop];
      return typeof value === "function" ? value.bind(current) : value;
    },
  });
}
