import type { Metrics } from "../metrics/index.ts";
import { bool, custom, defineOptions, durationMs, int, obj, str, type SpecFor } from "../options/index.ts";
import type { Services } from "../registry/index.ts";

export interface DashboardOptions {
  /**
   * The registries to show, one per namespace (getServices() results). The dashboard reads them
   * and leaves them open: whoever opened them closes them.
   */
  services: Services | Services[];
  /** 0 (default) picks a free port; `dashboard.url` tells which. `actorbus dashboard` uses 8080. */
  port?: number;
  /**
   * Default 127.0.0.1: the page names every service, host and pid of the namespace, so it is not
   * published to the network unasked.
   */
  host?: string;
  /**
   * Offer actions (restart a replica, reset a namespace). Default false: the POST endpoints then
   * answer 403 and the page shows no buttons.
   */
  allowActions?: boolean;
  /** How often to poll the namespace's status, ms. Default 1000. */
  intervalMs?: number;
  /** How much rate and latency history to keep and draw, seconds. Default 600. */
  historySeconds?: number;
  /** Served at /metrics (Prometheus text format); without it /metrics answers 404. */
  metrics?: Metrics;
  /** List the other namespaces on the server (their registry buckets). Default true. */
  discoverNamespaces?: boolean;
}

const isServices = (v: unknown) => v !== null && typeof v === "object" && typeof (v as Services).status === "function" && typeof (v as Services).watch === "function";

export const dashboardOptions = defineOptions(
  "startDashboard options",
  {
    services: custom<Services | Services[]>(
      (v) => isServices(v) || (Array.isArray(v) && v.length > 0 && v.every(isServices)),
      "a registry or a non-empty array of registries",
      "pass await getServices({ namespace }) (one per namespace to show)",
    ),
    port: int({ min: 0, max: 65_535, hint: "0 picks a free port" }),
    host: str({ nonEmpty: true, expected: 'an address to bind, such as "127.0.0.1" or "0.0.0.0"' }),
    allowActions: bool(),
    intervalMs: durationMs({ min: 100, hint: "how often the dashboard polls, e.g. 1000" }),
    historySeconds: int({ min: 10, max: 86_400, hint: "seconds of history to draw, e.g. 600" }),
    metrics: obj<Metrics>("pass the result of await createMetrics()", ["expose"]),
    discoverNamespaces: bool(),
  } satisfies SpecFor<DashboardOptions>,
  { port: 0, host: "127.0.0.1", allowActions: false, intervalMs: 1_000, historySeconds: 600, discoverNamespaces: true },
  { example: "{ services, port: 8080 }" },
);
