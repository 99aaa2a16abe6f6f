import { expect } from "chai";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { getServices } from "../../src/index.ts";
import { CounterService } from "../fixtures/services.ts";
import { startNatsCluster, type NatsCluster } from "../helpers/cluster.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";
import { clusterNodeKill, hostileFlood, singleServerRestart, type ScenarioReport } from "../helpers/scenarios.ts";

const replicasOf = async (url: string, bucket: string) => {
  const nc = await connect({ servers: url });
  try {
    return (await (await jetstreamManager(nc)).streams.info(`KV_${bucket}`)).config.num_replicas;
  } finally {
    await nc.close();
  }
};

const show = (r: ScenarioReport) =>
  console.log(
    `      ${r.scenario}: attempted ${r.attempted}, succeeded ${r.succeeded} (${(r.successRate * 100).toFixed(2)}%), ` +
      `failed typed ${r.failedTyped}, untyped ${r.failedUntyped}, hung ${r.hung}, retries ${r.retries}, reconnects ${r.reconnects}, ` +
      `registry ${r.registryBefore.length} -> ${r.registryAfter.length}, recovery ${r.recoveryMs} ms` +
      (r.hostile ? `; hostile: ${JSON.stringify(r.hostile)}` : ""),
  );

describe("NATS cluster", function () {
  this.timeout(120_000);
  let cluster: NatsCluster;
  before(async () => {
    cluster = await startNatsCluster(3);
  });
  after(async () => {
    await cluster?.stop();
  });

  it("replicates the registry bucket 3 ways on a cluster, 1 way on a single server", async () => {
    const ns = uniqueNamespace();
    const onCluster = await getServices({ servers: cluster.urls, namespace: ns });
    expect(onCluster.connection.clustered).to.equal(true);
    await onCluster.register("c", CounterService);
    expect(await replicasOf(cluster.urls[0]!, `actorbus_${ns}`)).to.equal(3);
    await onCluster.reset();
    await onCluster.close();

    const single = await getServices({ servers: testUrl(), namespace: ns });
    expect(single.connection.clustered).to.equal(false);
    expect(await replicasOf(testUrl(), `actorbus_${ns}`)).to.equal(1);
    await single.close();
  });

  it("honours an explicit registryReplicas", async () => {
    const ns = uniqueNamespace();
    const s = await getServices({ servers: cluster.urls, namespace: ns, registryReplicas: 1 });
    expect(await replicasOf(cluster.urls[1]!, `actorbus_${ns}`)).to.equal(1);
    await s.close();
  });

  it("sees a service registered through one node from the others", async () => {
    const ns = uniqueNamespace();
    const a = await getServices({ servers: cluster.urls[0], namespace: ns });
    const b = await getServices({ servers: cluster.urls[2], namespace: ns });
    await a.register("counter", CounterService, 5);
    expect(await (await b.get<CounterService>("counter")).increment()).to.equal(6);
    await a.reset();
    await b.close();
    await a.close();
  });
});

describe("faults under load", function () {
  this.timeout(180_000);

  it("survives SIGKILL of one of 3 cluster nodes: no entry lost, nothing hangs, >= 99% succeed", async () => {
    const r = await clusterNodeKill({ clients: 2, lanes: 4, loadMs: 1_500, outageMs: 1_500 });
    show(r);
    expect(r.attempted).to.be.greaterThan(200);
    expect(r.hung).to.equal(0);
    expect(r.failedUntyped).to.equal(0);
    expect(r.successRate).to.be.at.least(0.99);
    expect(r.registryAfter).to.deep.equal(r.registryBefore);
    expect(r.registryBefore).to.deep.equal(["pid"]);
    expect(r.reconnects, "the client that started on the killed node fails over").to.be.at.least(1);
  });

  it("survives a single-server restart: registry intact, calls resume within 2 s", async () => {
    const r = await singleServerRestart({ clients: 2, lanes: 4, loadMs: 1_000, outageMs: 500 });
    show(r);
    expect(r.hung).to.equal(0);
    expect(r.failedUntyped).to.equal(0);
    expect(r.registryAfter).to.deep.equal(["pid"]);
    expect(r.recoveryMs).to.be.lessThan(2_000);
  });

  it("keeps serving while hostile payloads flood the service's subjects: every hostile request gets a typed reply", async () => {
    const r = await hostileFlood({ clients: 2, lanes: 4, loadMs: 1_000, outageMs: 1_500 });
    show(r);
    const h = r.hostile!;
    expect(h.sent, `seed ${h.seed}`).to.be.greaterThan(2_000);
    expect(h.replies, `seed ${h.seed}: a hostile request went unanswered`).to.equal(h.withReply);
    expect(h.untypedReplies, `seed ${h.seed}`).to.equal(0);
    expect(h.typedErrors, `seed ${h.seed}`).to.be.greaterThan(h.withReply / 2);
    expect(r.hung).to.equal(0);
    expect(r.failedUntyped).to.equal(0);
    expect(r.successRate).to.be.at.least(0.99);
    expect(r.registryAfter).to.deep.equal(["pid"]);
  });
});
