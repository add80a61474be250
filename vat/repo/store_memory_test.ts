import { MemoryStore } from "./store_memory.ts";
import { testStore } from "./store_test_suite.ts";

testStore(
  "MemoryStore",
  () => Promise.resolve({ store: new MemoryStore(), cleanup: async () => {} }),
);
