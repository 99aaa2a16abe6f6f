import { getServices } from "../registry/index.ts";
import { collectStatus, formatStatus } from "../service/index.ts";
import { connectionFrom, parse } from "./args.ts";

export const STATUS_USAGE = `usage: actorbus status [--namespace N] [--servers URL] [--json]

Every service of the namespace with its replicas (hosts, pids, state, version, in-flight
calls, calls, errors, p50/p99 latency, restarts, and why a replica is failed or ejected), and the namespace's host agents with their
capacity.`;

/** `actorbus status`: one table of services and replicas, one of agents. */
export async function statusCommand(argv: string[]): Promise<string> {
  const { values } = parse(argv, {});
  if (values.help) return STATUS_USAGE;
  const services = await getServices(connectionFrom(values));
  try {
    const status = await collectStatus(services);
    return values.json ? JSON.stringify(status, null, 2) : formatStatus(status);
  } finally {
    await services.close();
  }
}
