import { expect } from "chai";
import { execFileSync } from "node:child_process";
import { connect } from "@nats-io/transport-node";
import { connectBus, findNatsServerBinary, type BusConnection } from "../../src/connection/index.ts";
import { InferenceServer, NatsTransport, type TensorBatch, type TensorRecord } from "../../src/inference/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { startNatsCluster, type NatsCluster } from "../helpers/cluster.ts";
import { uniqueNamespace, until } from "../helpers/nats.ts";
import { isAlive } from "../helpers/replicas.ts";
import { doubling, obs } from "../inference/helpers.ts";

class Work {
  calls = 0;
  async quick(x: number): Promise<number> {
    this.calls++;
    return x + 1;
  }
  async slow(ms: number): Promise<string> {
    this.calls++;
    await new Promise((r) => setTimeout(r, ms));
    return "done";
  }
}

/** One caller's loop of checked quick() calls until `running()` turns false: every outcome counted. */
async function quickCalls(h: { quick(x: number): Promise<number> }, counts: { calls: number; ok: number; errors: string[] }, running: () => boolean): Promise<void> {
  for (let x = 0; running(); x++) {
    counts.calls++;
    try {
      expect(await h.quick(x)).to.equal(x + 1);
      counts.ok++;
    } catch (err) {
      counts.errors.push(`${(err as Error).name}: ${(err as Error).message}`);
    }
  }
}

/**
 * A 2-node cluster whose node 0 goes into lame-duck mode while hosts on it serve under load: an
 * actor host and an inference server in this process (connected to node 0 only), callers on both
 * nodes. Nothing may fail: hosts keep serving through a bridge while they move, callers' requests
 * in flight get their replies before their connection moves, calls are never run twice.
 */
describe("cluster: lame-duck mode of a host's server (issue 16, item 6)", function () {
  this.timeout(120_000);
  let cluster: NatsCluster;
  const open: { close(): Promise<unknown> }[] = [];

  before(async () => {
    cluster = await startNatsCluster(2, "ldm_test", 'lame_duck_duration: "30s"\nlame_duck_grace_period: "2s"');
  });
  after(async () => {
    for (const c of open.splice(0).reverse()) await c.close().catch(() => {});
    await cluster?.stop();
  });

  it("hosts and callers on the leaving server move without failing a call; long calls in flight on both sides finish", async () => {
    const [n0, n1] = cluster.urls as [string, string];
    const namespace = uniqueNamespace("ldm");
    // Registry on node 1: it outlives node 0, whichever way the bucket is placed.
    const admin: Services = await getServices({ servers: [n1], namespace, registryReplicas: 1 });
    open.push(admin);
    const hostSide: Services = await getServices({ servers: [n0], namespace });
    open.push(hostSide);
    const work = new Work();
    await hostSide.registerInstance("work", work);
    const infConn: BusConnection = await connectBus({ servers: [n0] });
    const infServer = new InferenceServer((b: TensorBatch) => Promise.resolve(doubling(b)), new NatsTransport<TensorRecord, TensorRecord>({ connection: infConn, namespace, name: "policy" }), {}).start();
    await infServer.ready();
    open.push({ close: async () => (await infServer.shutdown(), await infConn.close()) });

    const callers = await Promise.all([n0, n1].map((u) => getServices({ servers: [u], namespace })));
    open.push(...callers);
    const infClients = callers.map((c) => new NatsTransport<TensorRecord, TensorRecord>({ connection: c.connection, namespace, name: "policy" }));
    open.push(...infClients);

    let running = true;
    const counts = { calls: 0, ok: 0, inference: 0, inferenceOk: 0, errors: [] as string[] };
    const lanes = callers.flatMap((c, i) => {
      const h = c.at<Work>("work", { timeoutMs: 5_000 });
      return [
        ...Array.from({ length: 4 }, () => quickCalls(h, counts, () => running)),
        (async () => {
          while (running) {
            counts.inference++;
            try {
              const r = await infClients[i]!.submit(obs(1, 2));
              expect(r.action).to.deep.equal(new Float32Array([2, 4]));
              counts.inferenceOk++;
            } catch (err) {
              counts.errors.push(`inference ${(err as Error).name}: ${(err as Error).message}`);
            }
          }
        })(),
      ];
    });
    // The lanes stop whatever happens: calls on a closed connection fail at once, and lanes left
    // running would spin and keep mocha from reporting the failure.
    let callsBefore = 0;
    try {
      await until(() => counts.ok > 2_000 && counts.inferenceOk > 100, 20_000, "load on both kinds of host");

      // Long calls in flight across the move: one served on the leaving server, one made from it.
      const served = callers[1]!.at<Work>("work", { timeoutMs: 10_000 }).slow(1_500);
      const elsewhere = new Work();
      await admin.registerInstance("elsewhere", elsewhere);
      const made = callers[0]!.at<Work>("elsewhere", { timeoutMs: 10_000 }).slow(1_500);
      await until(() => elsewhere.calls === 1, 5_000, "the outgoing long call running");

      const pid = cluster.nodes[0]!.pid!;
      callsBefore = work.calls;
      execFileSync(findNatsServerBinary()!, ["--signal", `ldm=${pid}`]);
      // Every connection of node 0 moves before the server starts closing them (2 s grace).
      await until(() => [hostSide.connection, infConn, callers[0]!.connection].every((c) => c.nc!.getServer().endsWith(`:${new URL(n1).port}`)), 2_000, "the connections on node 1");
      expect(await served).to.equal("done");
      expect(await made).to.equal("done");
      await until(() => !isAlive(pid), 60_000, "node 0 to exit");
      const atExit = counts.ok;
      await until(() => counts.ok > atExit + 1_000, 20_000, "calls after node 0 is gone");
    } finally {
      running = false;
    }
    await Promise.all(lanes);
    console.log(`      ${counts.calls} calls, ${counts.inference} inference requests through the move; ${work.calls - callsBefore} served after the signal`);
    expect(counts.errors).to.deep.equal([]);
    expect(counts.ok).to.equal(counts.calls);
    expect(counts.inferenceOk).to.equal(counts.inference);
    // Never run twice: the host counted exactly the calls its callers made (plus the long one).
    expect(work.calls).to.equal(counts.calls + 1);
    await cluster.nodes[0]!.restart();
    await cluster.ready();
  });

  it("a call that came in through the bridge is answered through the bridge's server, which knows its caller's reply subject", async () => {
    // The host's main connection stays on the leaving server for as long as one of its own
    // requests is in flight (the move waits for its reply); meanwhile its calls come in through
    // the bridge only. Their replies, lone (respond) or combined (transport.publish), must leave
    // through the bridge: the leaving server may not know yet a reply subject its caller made
    // moments ago on the other server (route interest travels on its own), and drops the reply.
    // Nothing makes that race lose every time; the connection a reply leaves through does.
    const [n0, n1] = cluster.urls as [string, string];
    const n0Port = new URL(n0).port;
    const namespace = uniqueNamespace("ldmr");
    const admin: Services = await getServices({ servers: [n1], namespace, registryReplicas: 1 });
    open.push(admin);
    const hostSide: Services = await getServices({ servers: [n0], namespace });
    open.push(hostSide);
    await hostSide.registerInstance("work", new Work());
    const caller: Services = await getServices({ servers: [n1], namespace });
    open.push(caller);

    // A slow responder on node 1 for the host's own request.
    const slow = await connect({ servers: n1 });
    open.push({ close: () => slow.close() });
    const slowSubject = `ldm.slow.${namespace}`;
    slow.subscribe(slowSubject, {
      callback: (_e, m) => {
        if (m.data.length === 0) m.respond(new Uint8Array(0));
        else setTimeout(() => m.respond(new Uint8Array([1])), 1_500);
      },
    });
    await slow.flush();
    const t = hostSide.connection.transport;
    await until(() => t.request(slowSubject, new Uint8Array(0), 500).then(() => true, () => false), 5_000, "the slow responder seen from node 0");

    // What the host's main connection sends to a reply subject while on node 0 with none of its
    // subscriptions left there (drained by the move: every call comes in through the bridge).
    const nc = hostSide.connection.nc!;
    const protocol = (nc as unknown as { protocol: { publish: (s: string, ...rest: unknown[]) => void; subscriptions: { all(): { queue?: string }[] } } }).protocol;
    const original = protocol.publish.bind(protocol);
    let drainedAt = 0;
    const drained = () => {
      if (!drainedAt && nc.getServer().endsWith(`:${n0Port}`) && !protocol.subscriptions.all().some((s) => s.queue)) drainedAt = Date.now();
      return drainedAt > 0;
    };
    const onLeavingAfterDrain: string[] = [];
    const spy = (subject: string, ...rest: unknown[]) => {
      // Replies to calls that came in just before the drain may still leave here.
      if (subject.startsWith("_INBOX") && drained() && Date.now() > drainedAt + 50 && nc.getServer().endsWith(`:${n0Port}`)) onLeavingAfterDrain.push(subject);
      original(subject, ...rest);
    };
    protocol.publish = spy;

    let running = true;
    const counts = { calls: 0, ok: 0, errors: [] as string[] };
    const h = caller.at<Work>("work", { timeoutMs: 5_000 });
    const lanes = Array.from({ length: 4 }, () => quickCalls(h, counts, () => running));
    const pid = cluster.nodes[0]!.pid!;
    let duringWait = 0;
    try {
      await until(() => counts.ok > 500, 20_000, "load on the host");
      const inFlight = t.request(slowSubject, new Uint8Array([1]), 10_000);
      await new Promise((r) => setTimeout(r, 50));
      execFileSync(findNatsServerBinary()!, ["--signal", `ldm=${pid}`]);
      await until(drained, 2_000, "the host's subscriptions drained off node 0");
      const atDrain = counts.ok;
      expect(await inFlight).to.deep.equal(new Uint8Array([1]));
      duringWait = counts.ok - atDrain;
      await until(() => nc.getServer().endsWith(`:${new URL(n1).port}`), 5_000, "the host's connection on node 1");
      await until(() => !isAlive(pid), 60_000, "node 0 to exit");
    } finally {
      running = false;
      await Promise.all(lanes);
      // The move parks publishes by wrapping this spy: it stays under that wrapper.
      if (protocol.publish === spy) protocol.publish = original;
    }
    expect(duringWait, "calls served through the bridge while the main connection waited on node 0").to.be.above(100);
    expect(onLeavingAfterDrain, "replies sent to the leaving server for calls that came in through the bridge").to.deep.equal([]);
    expect(counts.errors).to.deep.equal([]);
    expect(counts.ok).to.equal(counts.calls);
    await cluster.nodes[0]!.restart();
    await cluster.ready();
  });
});
