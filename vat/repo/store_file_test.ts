import { FileStore } from "./store_file.ts";
import { testStore } from "./store_test_suite.ts";

testStore("FileStore", async () => {
  const root = await Deno.makeTempDir({ prefix: "vat-filestore-" });
  return {
    store: new FileStore(root),
    cleanup: () => Deno.remove(root, { recursive: true }),
  };
});
