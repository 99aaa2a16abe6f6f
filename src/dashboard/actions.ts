import { unwrapReply } from "../reply/index.ts";
import { InvalidOptionsError, ServiceNotFoundError } from "../errors/index.ts";
import type { Services } from "../registry/index.ts";
import type { ServiceReport } from "../service/index.ts";
import { subjectsFor } from "../subjects/index.ts";

/**
 * Restarts one replica of a service: asks its rank-0 process to stop (the control op `reset`
 * uses). Its supervisor sees a healthy replica exit and restarts it, as after a crash: calls it
 * held fail with ReplicaCrashedError (retried elsewhere with maxTaskRetries), and the restart
 * counts against maxRestarts. Resolves once the process has stopped.
 */
export async function restartReplica(services: Services, report: ServiceReport | undefined, service: string, index: number, timeoutMs = 5_000): Promise<string> {
  if (!report) throw new ServiceNotFoundError(`no replicated service "${service}" in namespace "${services.namespace}"`, { details: { service } });
  const replica = report.replicas.find((r) => r.index === index);
  if (!replica) throw new ServiceNotFoundError(`service "${service}" has no replica ${index} (it has ${report.replicas.length})`, { details: { service, index } });
  if (replica.state !== "healthy") throw new InvalidOptionsError(`replica ${index} of "${service}" is ${replica.state}: only a healthy replica can be restarted`, { details: { service, index, state: replica.state } });
  const { codec, transport } = services.connection;
  // A replica's processes are instances named <incarnation>-<rank> (see the replica supervisor).
  const procId = `${replica.groupId}-0`;
  unwrapReply(codec, await transport.request(subjectsFor(services.namespace).instance(procId), codec.encode({ op: "stop", graceMs: 0 }), timeoutMs));
  return `replica ${index} (pid ${replica.pids[0] ?? "?"}) stopped; its supervisor restarts it`;
}

/** Stops every service of the namespace and empties its registry (what `actorbus reset` does). */
export async function resetNamespace(services: Services): Promise<string> {
  const before = await services.list();
  await services.reset();
  return `reset: stopped ${before.length} service(s)${before.length ? ` (${before.join(", ")})` : ""}`;
}
