import { unwrapReply } from "../reply/index.ts";
import type { HostRecord } from "../agent/index.ts";
import type { ServiceRecord, Services } from "../registry/index.ts";
import { subjectsFor } from "../subjects/index.ts";
import { liveAgents } from "./launchers.ts";
import type { ServiceReport } from "./types.ts";

export interface StatusRow {
  service: string;
  replica: string;
  hosts: string;
  pids: string;
  state: string;
  inflight: number;
  calls: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  restarts: number;
  /** The version the replica reports ("-": none; plain services have none). */
  version: string;
  /** Why a replica is failed or out of routing (crash loop, waiting for capacity, ejected); absent while it serves. */
  reason?: string;
}

/** What `actorbus status` shows: every live service's replicas, and the namespace's agents. */
export interface NamespaceStatus {
  namespace: string;
  services: ServiceReport[];
  rows: StatusRow[];
  hosts: HostRecord[];
  /** The registry records of the live services, by name (kind, class, methods, metadata). */
  records: ServiceRecord[];
}

export async function collectStatus(services: Services, timeoutMs = 2_000): Promise<NamespaceStatus> {
  const subjects = subjectsFor(services.namespace);
  const { codec, transport } = services.connection;
  const reports: ServiceReport[] = [];
  const rows: StatusRow[] = [];
  const plain = new Set<string>();
  const records: ServiceRecord[] = [];
  for (const name of await services.list()) {
    const record = await services.describe(name);
    if (record) records.push(record);
    if (record?.kind !== "service") {
      plain.add(name);
      continue;
    }
    try {
      const r = unwrapReply<ServiceReport>(codec, await transport.request(subjects.controller(name), codec.encode({ op: "status" }), timeoutMs));
      reports.push(r);
      for (const x of r.replicas) {
        rows.push({
          service: name,
          replica: String(x.index),
          hosts: x.hosts.join(",") || "-",
          pids: x.pids.join(",") || "-",
          state: x.ejected ? `${x.state} (ejected)` : x.state,
          reason: x.reason || undefined,
          inflight: x.inflight,
          calls: x.calls,
          errors: x.errors,
          p50Ms: x.p50Ms,
          p99Ms: x.p99Ms,
          restarts: x.restarts,
          version: x.version === null || x.version === undefined ? "-" : `${x.version}${x.updating ? " (updating)" : ""}`,
        });
      }
    } catch (err) {
      rows.push({ service: name, replica: "-", hosts: "-", pids: "-", state: `unreachable: ${(err as Error).message}`, inflight: 0, calls: 0, errors: 0, p50Ms: 0, p99Ms: 0, restarts: 0, version: "-" });
    }
  }
  if (plain.size > 0) {
    // Actors registered with services.register(): their instances are the replicas.
    for (const s of await services.status()) {
      if (!plain.has(s.record.name)) continue;
      s.instances.forEach((inst, i) => {
        rows.push({
          service: s.record.name,
          replica: String(i),
          hosts: inst.info.hostId,
          pids: String(inst.info.pid),
          state: inst.stats ? "healthy" : `unreachable: ${inst.error ?? "no answer"}`,
          inflight: (inst.stats?.running ?? 0) + (inst.stats?.queued ?? 0),
          calls: inst.stats?.calls ?? 0,
          errors: inst.stats?.errors ?? 0,
          p50Ms: inst.stats?.p50Ms ?? 0,
          p99Ms: inst.stats?.p99Ms ?? 0,
          restarts: 0,
          version: "-",
        });
      });
    }
  }
  rows.sort((a, b) => (a.service === b.service ? Number(a.replica) - Number(b.replica) : a.service < b.service ? -1 : 1));
  const hosts = services.connection.backend === "nats" ? await liveAgents(services.connection, subjects, timeoutMs) : [];
  return { namespace: services.namespace, services: reports, rows, hosts, records };
}

function table(header: string[], body: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(header), ...body.map(line)].join("\n");
}

const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

export function formatStatus(s: NamespaceStatus): string {
  const out: string[] = [];
  if (s.rows.length === 0) out.push(`no services in namespace "${s.namespace}"`);
  else {
    out.push(
      table(
        ["SERVICE", "REPLICA", "HOSTS", "PIDS", "STATE", "VERSION", "IN-FLIGHT", "CALLS", "ERRORS", "P50 MS", "P99 MS", "RESTARTS", "REASON"],
        s.rows.map((r) => [r.service, r.replica, r.hosts, r.pids, r.state, r.version, String(r.inflight), String(r.calls), String(r.errors), ms(r.p50Ms), ms(r.p99Ms), String(r.restarts), r.reason ?? ""]),
      ),
    );
  }
  out.push("");
  if (s.hosts.length === 0) out.push(`no agents in namespace "${s.namespace}" (replicas run on the machine that launches them)`);
  else {
    out.push(
      table(
        ["HOST", "CPUS USED", "GPUS USED", "PROCESSES", "AGENT PID", "HOSTNAME"],
        s.hosts.map((h) => [h.hostId, `${h.usedCpus}/${h.cpus}`, `${h.usedGpus.length}/${h.gpus}`, String(h.processes), String(h.pid), h.hostname]),
      ),
    );
  }
  return out.join("\n");
}
