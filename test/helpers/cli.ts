import { fileURLToPath } from "node:url";

/**
 * Node arguments that run the `actorbus` command from sources. The package's bin runs the
 * build instead; test/package runs that one, as users get it.
 */
export const CLI_ARGS: readonly string[] = ["--import", "tsx", fileURLToPath(new URL("../../src/cli/run.ts", import.meta.url))];
