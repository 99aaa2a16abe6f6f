import type { MetricsSink } from "../metrics/index.ts";
import type { HostRecord } from "./protocol.ts";

export interface AgentFigures {
  record(): HostRecord;
  /** Exits of replica processes so far: asked for (stop) and not. */
  exits: { expected: number; unexpected: number };
}

/** An agent's capacity and processes, read when Prometheus scrapes. Returns the unregistering function. */
export function watchAgent(metrics: MetricsSink, namespace: string, host: string, a: AgentFigures): () => void {
  const base = { namespace, host };
  const stops = [
    metrics.read("actorbus_agent_processes", (push) => push(base, a.record().processes)),
    metrics.read("actorbus_agent_slots", (push) => {
      const r = a.record();
      push({ ...base, kind: "process", state: "used" }, r.usedCpus);
      push({ ...base, kind: "process", state: "free" }, r.cpus - r.usedCpus);
      push({ ...base, kind: "gpu", state: "used" }, r.usedGpus.length);
      push({ ...base, kind: "gpu", state: "free" }, r.gpus - r.usedGpus.length);
    }),
    metrics.read("actorbus_agent_process_exits_total", (push) => {
      push({ ...base, expected: "true" }, a.exits.expected);
      push({ ...base, expected: "false" }, a.exits.unexpected);
    }),
  ];
  return () => {
    for (const s of stops) s();
  };
}
