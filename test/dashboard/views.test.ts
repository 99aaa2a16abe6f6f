import { expect } from "chai";
import { kindOf, replicaViews, serviceViews } from "../../src/dashboard/index.ts";
import type { NamespaceStatus } from "../../src/service/index.ts";
import type { ServiceRecord } from "../../src/registry/index.ts";

const record = (name: string, kind: string, className = "C", metadata: Record<string, string> = {}) => ({ name, kind, className, metadata }) as unknown as ServiceRecord;
const row = (service: string, replica: string, calls: number, errors: number, state = "healthy", p50Ms = 1, p99Ms = 2) => ({
  service,
  replica,
  hosts: "h",
  pids: "1",
  state,
  inflight: 0,
  calls,
  errors,
  p50Ms,
  p99Ms,
  restarts: 0,
  version: "-",
});
const status = (rows: ReturnType<typeof row>[], records: ServiceRecord[]): NamespaceStatus => ({ namespace: "ns", services: [], rows, hosts: [], records });

describe("dashboard views (no NATS)", () => {
  it("tells services, actors, inference servers and executors apart by their records", () => {
    expect(kindOf(record("a", "service"))).to.equal("service");
    expect(kindOf(record("b", "actor", "InferenceEndpoint", { kind: "inference" }))).to.equal("inference");
    expect(kindOf(record("c", "actor", "PythonExecutorService"))).to.equal("executor");
    expect(kindOf(record("d", "actor"))).to.equal("actor");
    expect(kindOf(undefined)).to.equal("actor");
  });

  it("computes calls/s and error rate between two polls, leaving out the dashboard's own calls", () => {
    const prev = new Map();
    const records = [record("svc", "service"), record("policy", "actor", "InferenceEndpoint", { kind: "inference" })];
    const first = serviceViews(status([row("svc", "0", 100, 0), row("svc", "1", 100, 0), row("policy", "0", 10, 0)], records), 1_000, prev);
    expect(first.map((s) => s.callsPerSecond)).to.deep.equal([0, 0]); // nothing to compare with yet
    const second = serviceViews(status([row("svc", "0", 150, 5, "healthy", 1, 9), row("svc", "1", 250, 5, "recovering", 3, 4), row("policy", "0", 12, 0)], records), 3_000, prev, new Map([["policy", 2]]));
    const svc = second.find((s) => s.name === "svc")!;
    expect(svc).to.include({ kind: "service", replicas: 2, healthy: 1, calls: 400, errors: 10, callsPerSecond: 100, p99Ms: 9 });
    expect(svc.errorRate).to.be.closeTo(10 / 200, 1e-9);
    expect(svc.p50Ms).to.be.closeTo((1 * 150 + 3 * 250) / 400, 1e-9);
    expect(second.find((s) => s.name === "policy")!.callsPerSecond).to.equal(0); // its 2 calls were ours
    // A counter that went down (fresh figures after a restart) counts from zero; a removed service is forgotten.
    const third = serviceViews(status([row("svc", "0", 20, 0)], [records[0]!]), 4_000, prev);
    expect(third[0]!.callsPerSecond).to.equal(20);
    expect([...prev.keys()]).to.deep.equal(["svc"]);
  });

  it("offers restarts for replicas of services only", () => {
    const views = replicaViews(status([row("svc", "0", 0, 0), row("act", "0", 0, 0), row("gone", "-", 0, 0, "unreachable: x")], [record("svc", "service"), record("act", "actor"), record("gone", "service")]));
    expect(views.map((v) => v.restartable)).to.deep.equal([true, false, false]);
  });
});
