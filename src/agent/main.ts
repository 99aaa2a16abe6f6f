/**
 * Runs a host agent as a process: `node --import tsx src/agent/main.ts --host-id a ...`, the
 * same as `actorbus agent ...`. Tests and examples use it to simulate several hosts.
 */
import { agentCommand } from "../cli/agent.ts";
import { UsageError } from "../cli/args.ts";
import { ActorBusError } from "../errors/index.ts";

agentCommand(process.argv.slice(2)).then(
  (out) => {
    if (out) console.log(out);
    process.exit(0);
  },
  (err) => {
    const e = err as Error;
    console.error(err instanceof ActorBusError ? `${e.name} [${err.code}]: ${e.message}` : `error: ${e.stack ?? e.message}`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
