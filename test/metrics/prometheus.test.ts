import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { createMetrics, serveMetrics, type Metrics, type MetricsServer } from "../../src/metrics/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { replicaPids, startAgentProcess, stopAllAgents, type AgentProcess } from "../helpers/replicas.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { PROMETHEUS, promtoolCheck } from "./exposition.ts";

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });

interface PromSeries {
  metric: Record<string, string>;
  value: [number, string];
}

describe("metrics: a real Prometheus scrapes an agent and a service", function () {
  this.timeout(90_000);
  const ns = uniqueNamespace("prom");
  let dir: string;
  let prom: ChildProcess | undefined;
  let promExited: Promise<void> | undefined;
  let agent: AgentProcess;
  let metrics: Metrics;
  let services: Services;
  let served: MetricsServer;
  let api: string;

  before(async function () {
    if (!existsSync(PROMETHEUS)) this.skip();
    dir = mkdtempSync(join(tmpdir(), "actorbus-prom-"));
    agent = await startAgentProcess(testUrl(), ns, "prom-host", ["--cpus", "2", "--metrics-port", "0"]);
    const agentUrl = /metrics at (\S+)/.exec(agent.output.join("\n"))?.[1];
    expect(agentUrl, agent.output.join("\n")).to.be.a("string");
    metrics = await createMetrics();
    services = await getServices({ namespace: ns, servers: testUrl(), metrics });
    served = await serveMetrics({ metrics, port: 0 });

    const webPort = await freePort();
    api = `http://127.0.0.1:${webPort}`;
    const target = (u: string) => new URL(u).host;
    writeFileSync(
      join(dir, "prometheus.yml"),
      [
        "global:",
        "  scrape_interval: 1s",
        "  scrape_timeout: 1s",
        "scrape_configs:",
        "  - job_name: actorbus_service",
        `    static_configs: [{ targets: ["${target(served.url)}"] }]`,
        "  - job_name: actorbus_agent",
        `    static_configs: [{ targets: ["${target(agentUrl!)}"] }]`,
        "",
      ].join("\n"),
    );
    prom = spawn(PROMETHEUS, [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${webPort}`], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    const log: string[] = [];
    prom.stderr!.on("data", (b: Buffer) => log.push(b.toString()));
    promExited = new Promise((r) => prom!.once("exit", () => r()));
    await until(async () => (await fetch(`${api}/-/ready`).then((r) => r.ok, () => false)), 30_000, `prometheus to be ready: ${log.join("").slice(-2000)}`);
  });

  after(async () => {
    if (prom && prom.exitCode === null && prom.signalCode === null) prom.kill("SIGTERM");
    await promExited;
    await served?.close();
    await services?.close();
    await stopAllAgents();
    if (dir) rmSync(dir, { recursive: true, force: true });
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  const query = async (q: string): Promise<PromSeries[]> => {
    const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(q)}`);
    const body = (await res.json()) as { status: string; data: { result: PromSeries[] } };
    expect(body.status).to.equal("success");
    return body.data.result;
  };

  it("has the service's calls, replicas and the agent's slots, queried back through its HTTP API", async () => {
    const svc = await Counter.options({ numReplicas: 1, services, healthIntervalMs: 200 }).asService();
    try {
      const viaRegistry = await services.get<Counter>(svc.status().name);
      for (let i = 0; i < 5; i++) await viaRegistry.incr(1);
      await viaRegistry.failMe().catch(() => {});
      const name = svc.status().name;

      let calls: PromSeries[] = [];
      await until(async () => {
        // The handle sends these calls straight to the replica (the registry's route table), so
        // this process counts them as its handle's calls, not as calls its registry face answered.
        calls = await query(`actorbus_client_calls_total{namespace="${ns}"}`);
        return calls.some((s) => s.metric.method === "incr" && s.value[1] === "5") && calls.some((s) => s.metric.code === "REMOTE");
      }, 30_000, "actorbus_client_calls_total in Prometheus");
      const incr = calls.find((s) => s.metric.method === "incr")!;
      expect(incr.metric).to.include({ namespace: ns, service: name, code: "OK", job: "actorbus_service" });
      expect(calls.find((s) => s.metric.code === "REMOTE")!.metric).to.include({ method: "failMe", service: name });

      await until(async () => (await query(`actorbus_replicas{namespace="${ns}",state="healthy"}`)).some((s) => s.value[1] === "1"), 30_000, "actorbus_replicas");
      const buckets = await query(`actorbus_client_call_duration_seconds_bucket{namespace="${ns}",method="incr",le="+Inf"}`);
      expect(buckets.map((s) => s.value[1])).to.deep.equal(["5"]);

      await until(async () => {
        const slots = await query(`actorbus_agent_slots{namespace="${ns}",kind="process",state="used"}`);
        return slots.length === 1 && slots[0]!.value[1] === "1" && slots[0]!.metric.job === "actorbus_agent";
      }, 30_000, "the agent's used slot");
      const up = await query(`up{job=~"actorbus_.*"}`);
      expect(up.map((s) => s.value[1])).to.deep.equal(["1", "1"]);

      // The agent's exposition passes promtool too.
      const agentText = await (await fetch(/metrics at (\S+)/.exec(agent.output.join("\n"))![1]!)).text();
      const check = promtoolCheck(agentText);
      expect(check.status, check.output).to.equal(0);
    } finally {
      await svc.shutdown();
    }
  });
});
