import { startDashboard } from "../dashboard/index.ts";
import { dashboardOptions } from "../dashboard/options.ts";
import { createMetrics } from "../metrics/index.ts";
import { int } from "../options/index.ts";
import { getServices, type Services } from "../registry/index.ts";
import { connectionFrom, numericFlag, parse } from "./args.ts";

export const DASHBOARD_USAGE = `usage: actorbus dashboard [--namespace N]... [--port 8080] [--host 127.0.0.1] [--allow-actions]
                          [--interval-ms 1000] [--servers URL]

Serves a live page at http://127.0.0.1:8080/ until SIGINT/SIGTERM: the namespace's services
(kind, replicas, calls/s, error rate, p50/p99), replicas (host, pid, state, in-flight calls,
restarts), agents (slots used and free, last heartbeat), inference servers (batch size, queue),
Python executors (busy, idle) and registry events as they happen, with rate and latency over the
last minutes. --namespace is repeatable (one tab each; default ACTORBUS_NAMESPACE, else
"default"). The page also lists the other namespaces on the server.

Read-only unless --allow-actions: then the page can restart a replica and reset a namespace
(anyone who can open the page can do so). It binds 127.0.0.1 unless --host says otherwise
(0.0.0.0 publishes every service, host and pid of the namespace to the network).

Prometheus metrics of the dashboard's own process (its registry watch lag, among others) are at
/metrics on the same port.`;

/** `actorbus dashboard`: serves the page until SIGINT/SIGTERM. */
export async function dashboardCommand(argv: string[]): Promise<string | void> {
  const { values } = parse(argv, {
    namespace: { type: "string", short: "n", multiple: true },
    port: { type: "string" },
    host: { type: "string" },
    "allow-actions": { type: "boolean" },
    "interval-ms": { type: "string" },
  });
  if (values.help) return DASHBOARD_USAGE;
  const port = numericFlag("dashboard", "port", values.port, int({ min: 0, max: 65_535, hint: "0 picks a free port" })) ?? 8080;
  const intervalMs = numericFlag("dashboard", "interval-ms", values["interval-ms"], dashboardOptions.spec.intervalMs);
  const given = (values.namespace as string[] | undefined) ?? [];
  const base = connectionFrom({ ...values, namespace: given[0] });
  const namespaces = [...new Set([base.namespace!, ...given.slice(1)])];
  const metrics = await createMetrics();
  const registries: Services[] = [];
  try {
    registries.push(await getServices({ ...base, name: "actorbus-dashboard", metrics }));
    // One connection for every namespace.
    for (const ns of namespaces.slice(1)) registries.push(await getServices({ namespace: ns, connection: registries[0]!.connection, metrics }));
    const dashboard = await startDashboard({
      services: registries,
      port,
      host: values.host as string | undefined,
      allowActions: values["allow-actions"] === true,
      intervalMs,
      metrics,
    });
    console.log(`dashboard at ${dashboard.url} (namespace${namespaces.length > 1 ? "s" : ""} ${namespaces.join(", ")}${values["allow-actions"] ? "; actions allowed" : "; read-only"})`);
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    await dashboard.close();
    return "dashboard stopped";
  } finally {
    // The first registry owns the connection: close the others first.
    for (const r of registries.reverse()) await r.close();
  }
}
