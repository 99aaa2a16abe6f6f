/**
 * The `actorbus` command: bin/actorbus.mjs runs the built copy of this module on plain node;
 * inside this repository `node --import tsx src/cli/run.ts` runs it from sources.
 */
import { main } from "./main.ts";

process.exitCode = await main(process.argv.slice(2));
