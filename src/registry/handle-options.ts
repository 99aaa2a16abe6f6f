import { bool, defineOptions, durationMs, type SpecFor } from "../options/index.ts";
import type { HandleOptions, WatchOptions } from "./types.ts";

/** Options of get(), at() and getClient(): checked before any lookup, so a bad deadline fails at once. */
export const handleOptions = defineOptions(
  "handle options",
  { timeoutMs: durationMs({ min: 1, hint: "the deadline of each call through the handle" }) } satisfies SpecFor<HandleOptions>,
  {},
  { example: "{ timeoutMs: 5_000 }" },
);

/** Options of watch(). */
export const watchOptions = defineOptions(
  "watch options",
  { includeExisting: bool("true to get the services registered before the watch first") } satisfies SpecFor<WatchOptions>,
  { includeExisting: false },
  { example: "{ includeExisting: true }" },
);
