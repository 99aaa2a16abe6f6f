import type { BusConnection, Inbound, Subscription } from "../connection/index.ts";
import { encodeOk } from "../reply/index.ts";
import type { Subjects } from "../subjects/index.ts";
import type { ControllerState } from "./controller-state.ts";
import { serveMicro, type MicroEndpointStats, type MicroResponder } from "./micro.ts";
import type { ResolvedServiceOptions } from "./options.ts";
import { errText, type Replica } from "./replica-state.ts";
import type { RollingReport } from "./rolling.ts";
import type { ReplicaReport, ReplicaStateName, ServiceReport } from "./types.ts";

/**
 * What a service tells about itself: its report (svc.status(), `actorbus status`, on the
 * controller's status subject) and, per method, the figures $SRV STATS gives `nats micro`.
 */
export interface ServiceReporter {
  /** One call of `method` that began at performance.now() `t0` ended (failed, with `err`). */
  recordMethod(method: string, t0: number, err?: unknown): void;
  report(): ServiceReport;
  /** Answers the status subject and $SRV, under the controller id the state holds by now. */
  listen(): void;
  stop(): void;
}

export interface ServiceReporterParams {
  state: ControllerState;
  conn: BusConnection;
  subjects: Subjects;
  namespace: string;
  className: string;
  placement: ServiceReport["placement"];
  options: ResolvedServiceOptions;
  methods: string[];
  /** A replica's reported version (versions.ts). */
  versionOf(r: Replica): number | undefined;
  /** The rolling update in progress (rolling.ts). */
  rolling(): RollingReport | null;
}

interface MethodStats {
  requests: number;
  errors: number;
  lastError: string;
  ns: number;
}

export function createServiceReporter(p: ServiceReporterParams): ServiceReporter {
  const { state: s, conn, subjects, options: o, methods } = p;
  const { name, replicas } = s;
  const startedAt = new Date().toISOString();
  const methodStats = new Map<string, MethodStats>();
  let sub: Subscription | undefined;
  let micro: MicroResponder | undefined;

  const recordMethod = (method: string, t0: number, err?: unknown) => {
    let m = methodStats.get(method);
    if (!m) methodStats.set(method, (m = { requests: 0, errors: 0, lastError: "", ns: 0 }));
    m.requests++;
    m.ns += (performance.now() - t0) * 1e6;
    if (err !== undefined) {
      m.errors++;
      m.lastError = errText(err);
    }
  };

  const report = (): ServiceReport => ({
    name,
    namespace: p.namespace,
    className: p.className,
    controllerId: s.controllerId,
    placement: p.placement,
    routing: o.routing,
    startedAt,
    state: s.state,
    options: {
      numReplicas: o.numReplicas,
      procs: o.procs,
      hosts: o.hosts,
      withGpus: o.withGpus,
      maxConcurrency: o.maxConcurrency,
      maxPending: o.maxPending,
      maxRestarts: o.maxRestarts,
      maxTaskRetries: o.maxTaskRetries,
      timeoutMs: o.timeoutMs,
    },
    sessions: replicas.reduce((n, r) => n + r.sessions, 0),
    replicas: replicas.map((r): ReplicaReport => {
      const st = r.stats.snapshot(r.outstanding, 0);
      return {
        index: r.index,
        state: r.state,
        groupId: r.groupId,
        hosts: r.hosts,
        pids: r.procs.map((x) => x.pid),
        inflight: r.outstanding,
        calls: st.calls,
        errors: st.errors,
        p50Ms: st.p50Ms,
        p99Ms: st.p99Ms,
        restarts: r.totalRestarts,
        sessions: r.sessions,
        lastError: r.lastError,
        version: p.versionOf(r) ?? null,
        updating: r.updating,
        ejected: r.ejected,
        reason: r.reason,
        served: r.served ? { ...r.served } : null,
      };
    }),
    replicaStates: countStates(replicas),
    rolling: p.rolling(),
  });

  // $SRV STATS: the replicas' versions in replica order ("-": none reported yet) and the lowest
  // of the healthy ones, for `nats micro stats` and dashboards.
  const liveMetadata = (): Record<string, string> => {
    const vs = replicas.map((r) => p.versionOf(r));
    const healthy = replicas.flatMap((r, i) => (r.state === "healthy" && vs[i] !== undefined ? [vs[i]!] : []));
    return { replica_versions: vs.map((v) => (v === undefined ? "-" : String(v))).join(","), min_version: healthy.length ? String(Math.min(...healthy)) : "" };
  };

  const microEndpoints = (): MicroEndpointStats[] =>
    methods.map((m) => {
      const st = methodStats.get(m);
      return { name: m, subject: subjects.call(name), requests: st?.requests ?? 0, errors: st?.errors ?? 0, lastError: st?.lastError ?? "", processingTimeNs: st?.ns ?? 0 };
    });

  return {
    recordMethod,
    report,
    listen() {
      sub = conn.transport.subscribe(subjects.controller(name), (msg: Inbound) => {
        if (msg.reply) msg.respond(encodeOk(conn.codec, report()));
      });
      micro = serveMicro({
        conn,
        name,
        id: s.controllerId,
        version: o.version,
        description: o.description || `${p.className} (${o.numReplicas} replica${o.numReplicas === 1 ? "" : "s"}) in namespace ${p.namespace}`,
        metadata: { ...o.metadata, namespace: p.namespace, class: p.className, replicas: String(o.numReplicas) },
        startedAt,
        endpoints: microEndpoints,
        liveMetadata,
      });
    },
    stop() {
      sub?.unsubscribe();
      micro?.stop();
    },
  };
}

const STATES: readonly ReplicaStateName[] = ["starting", "healthy", "recovering", "failed", "stopped"];

/** The service's replicas by state, for status and dashboards. */
function countStates(replicas: readonly Replica[]): Record<ReplicaStateName | "ejected", number> {
  const out = Object.fromEntries([...STATES, "ejected"].map((k) => [k, 0])) as Record<ReplicaStateName | "ejected", number>;
  for (const r of replicas) {
    out[r.state]++;
    if (r.ejected) out.ejected++;
  }
  return out;
}
