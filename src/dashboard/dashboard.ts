import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { ActorBusError, InvalidOptionsError } from "../errors/index.ts";
import { listNamespaces, type Services } from "../registry/index.ts";
import { resetNamespace, restartReplica } from "./actions.ts";
import { loadAssets } from "./assets.ts";
import { NamespaceCollector } from "./collector.ts";
import { handleRequest } from "./http.ts";
import { dashboardOptions, type DashboardOptions } from "./options.ts";
import { EventStreams } from "./sse.ts";
import type { DashboardHello, NamespacesView } from "./types.ts";

/** How often the list of the server's namespaces is read again. */
const DISCOVER_MS = 10_000;

export interface Dashboard extends AsyncDisposable {
  readonly port: number;
  /** The page, e.g. http://127.0.0.1:8080/ */
  readonly url: string;
  /** Stops serving (open pages see the stream end), polling and watching. Idempotent; leaves the registries open. */
  close(): Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/**
 * Serves the live dashboard page for the namespaces of `services`: what `actorbus status` shows,
 * polled every intervalMs and pushed to the page over server-sent events, registry changes as
 * they happen, rate and latency history, and (with allowActions) replica restarts and resets.
 */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const o = dashboardOptions.parse(options);
  if (!o.services) throw new InvalidOptionsError("startDashboard needs { services }: pass await getServices({ namespace }) (or an array, one per namespace)");
  const registries: Services[] = Array.isArray(o.services) ? o.services : [o.services];
  const byNamespace = new Map<string, Services>();
  for (const s of registries) {
    if (byNamespace.has(s.namespace)) throw new InvalidOptionsError(`startDashboard: two registries of namespace "${s.namespace}"; pass one per namespace`);
    byNamespace.set(s.namespace, s);
  }
  const assets = loadAssets();
  const streams = new EventStreams();
  const hello: DashboardHello = { namespaces: [...byNamespace.keys()], allowActions: o.allowActions, intervalMs: o.intervalMs, historySeconds: o.historySeconds };
  const namespaces: NamespacesView = { followed: hello.namespaces, discovered: [] };

  const collectors = new Map<string, NamespaceCollector>();
  for (const [ns, services] of byNamespace) {
    collectors.set(
      ns,
      new NamespaceCollector({
        services,
        intervalMs: o.intervalMs,
        historySeconds: o.historySeconds,
        emit: (type: "snapshot" | "event", data: unknown) => streams.send(type, data),
      }),
    );
  }

  let discoverTimer: NodeJS.Timeout | undefined;
  const discover = async () => {
    try {
      const found = await listNamespaces(registries[0]!.connection);
      if (found.join() !== namespaces.discovered.join()) {
        namespaces.discovered = found;
        streams.send("namespaces", namespaces);
      }
    } catch {
      // A user confined to its namespace may not list the others: the page shows the followed ones.
    }
  };

  const collector = (ns: string) => {
    const c = collectors.get(ns);
    if (!c) throw new InvalidOptionsError(`this dashboard does not follow namespace "${ns}" (it follows ${hello.namespaces.join(", ")})`);
    return c;
  };

  const bound = o.host.replace(/^\[|\]$/g, "");
  const allowedHosts = LOOPBACK.has(bound) || bound.startsWith("127.") ? new Set<string>() : undefined;
  const server: Server = createServer((req, res) =>
    handleRequest(
      {
        assets,
        metrics: o.metrics,
        allowActions: o.allowActions,
        allowedHosts,
        snapshot: () => ({
          hello,
          namespaces,
          snapshots: [...collectors.values()].map((c) => c.latest),
          history: Object.fromEntries([...collectors].map(([ns, c]) => [ns, c.history.all()])),
          events: [...collectors.values()].flatMap((c) => c.events),
        }),
        openEvents: (res) =>
          streams.open(res, (send) => {
            send("hello", hello);
            send("namespaces", namespaces);
            for (const [ns, c] of collectors) {
              send("history", { namespace: ns, points: c.history.all() });
              send("snapshot", { ...c.latest, points: {} });
              send("events", { namespace: ns, events: c.events });
            }
          }),
        async restart(ns, service, replica) {
          const c = collector(ns);
          const message = await restartReplica(byNamespace.get(ns)!, c.reports.get(service), service, replica);
          c.note(service, `restart asked from the dashboard: ${message}`);
          void c.refresh();
          return message;
        },
        async reset(ns) {
          const c = collector(ns);
          const message = await resetNamespace(byNamespace.get(ns)!);
          c.note("*", `reset from the dashboard: ${message}`);
          void c.refresh();
          return message;
        },
      },
      req,
      res,
    ),
  );

  await Promise.all([...collectors.values()].map((c) => c.start()));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(o.port, o.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    await Promise.all([...collectors.values()].map((c) => c.close()));
    streams.close();
    const e = err as NodeJS.ErrnoException;
    throw new ActorBusError(`cannot serve the dashboard on ${o.host}:${o.port}: ${e.message}`, { cause: err, details: { host: o.host, port: o.port } });
  }
  const port = (server.address() as AddressInfo).port;
  if (allowedHosts) for (const h of ["127.0.0.1", "localhost", "[::1]", o.host.includes(":") ? `[${bound}]` : bound]) allowedHosts.add(`${h}:${port}`);
  if (o.discoverNamespaces) {
    await discover();
    discoverTimer = setInterval(() => void discover(), DISCOVER_MS);
    discoverTimer.unref();
  }

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      clearInterval(discoverTimer);
      streams.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Event streams and keep-alive connections would hold close() open.
        server.closeAllConnections();
      });
      await Promise.all([...collectors.values()].map((c) => c.close()));
    })());
  const urlHost = o.host.includes(":") ? `[${bound}]` : o.host === "0.0.0.0" ? "127.0.0.1" : o.host;
  return { port, url: `http://${urlHost}:${port}/`, close, [Symbol.asyncDispose]: close };
}
