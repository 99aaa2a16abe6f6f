import { ActorBusError } from "../errors/index.ts";
import { agentCommand } from "./agent.ts";
import { UsageError } from "./args.ts";
import { callCommand } from "./call.ts";
import { dashboardCommand } from "./dashboard.ts";
import { lsCommand } from "./ls.ts";
import { resetCommand } from "./reset.ts";
import { statusCommand } from "./status.ts";

const HELP = `actorbus — services and actors on NATS

  actorbus ls     [--namespace N] [--json]              services with host, calls, errors
  actorbus call   <service> <method> [json args] [-n N] [--timeout-ms MS]
                                                        call a method, print the JSON result
  actorbus reset  --namespace N                         stop every service of a namespace
  actorbus status [--namespace N] [--json]              services with replicas, hosts, state, latency; agents
  actorbus agent  [--host-id ID] [--cpus N] [--gpus N|0,2,5,7]
                                                        run a host agent that starts replica processes
  actorbus dashboard [--namespace N]... [--port 8080] [--allow-actions]
                                                        serve a live web page of the namespace (127.0.0.1)

Common: --servers URL (default NATS_URL, then nats://127.0.0.1:4222), --creds FILE,
--inbox-prefix P (a tenant's own reply prefix, e.g. _INBOX_team_a; or NATS_INBOX_PREFIX).
Credentials from the environment: NATS_USER, NATS_PASSWORD, NATS_TOKEN, NATS_CREDS.`;

type Command = (argv: string[]) => Promise<string | void>;
const commands: Record<string, Command> = {
  ls: lsCommand,
  call: callCommand,
  reset: resetCommand,
  status: statusCommand,
  agent: agentCommand,
  dashboard: dashboardCommand,
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(HELP);
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`unknown command "${name}"\n\n${HELP}`);
    return 2;
  }
  try {
    const out = await cmd(rest);
    if (out) console.log(out);
    return 0;
  } catch (err) {
    const e = err as Error;
    console.error(err instanceof ActorBusError ? `${e.name} [${err.code}]: ${e.message}` : `error: ${e.stack ?? e.message}`);
    return err instanceof UsageError ? 2 : 1;
  }
}
