import { expect } from "chai";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { startNatsServer, type NatsServerProcess } from "../../src/connection/index.ts";
import { InvalidOptionsError, JetStreamNotEnabledError } from "../../src/errors/index.ts";
import { ActorBusError, getServices, ServiceNotFoundError, ServiceUnavailableError, type Services } from "../../src/index.ts";
import { startNatsCluster, type NatsCluster } from "../helpers/cluster.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";

class Echo {
  echo(v: unknown) {
    return v;
  }
}

/** Counts the registry reads (direct gets of the bucket's stream) made over a connection. */
function countReads(nc: NatsConnection, bucket: string): { readonly reads: number } {
  const counter = { reads: 0 };
  const original = nc.request.bind(nc);
  nc.request = ((subject: string, ...rest: Parameters<NatsConnection["request"]> extends [string, ...infer R] ? R : never) => {
    if (subject.startsWith(`$JS.API.DIRECT.GET.KV_${bucket}`)) counter.reads++;
    return original(subject, ...rest);
  }) as NatsConnection["request"];
  return counter;
}

const failure = async (p: Promise<unknown>): Promise<{ err: any; ms: number }> => {
  const t0 = performance.now();
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  return { err, ms: performance.now() - t0 };
};

/** The server_name of the node holding the leader of the registry bucket's stream. */
async function bucketLeader(url: string, ns: string): Promise<string> {
  const nc = await connect({ servers: url });
  try {
    const si = await (await jetstreamManager(nc)).streams.info(`KV_actorbus_${ns}`);
    return si.cluster!.leader!;
  } finally {
    await nc.close();
  }
}

describe("registry faults (issue 16, items 1 and 3)", function () {
  this.timeout(120_000);

  describe("a no-responders storm against a healthy registry", () => {
    let services: Services;
    before(async () => {
      services = await getServices({ namespace: uniqueNamespace("storm"), servers: testUrl(), devServer: "never" });
    });
    after(async () => {
      await services.reset();
      await services.close();
    });

    it("500 failing calls to an unregistered name make a registry read or two, not 500, and all say not found", async () => {
      await services.register("present", Echo);
      const counter = countReads(services.connection.nc!, `actorbus_${services.namespace}`);
      const ghost = services.at<Echo>("ghost", { timeoutMs: 2_000 });
      const errs = await Promise.all(Array.from({ length: 500 }, () => ghost.echo(1).catch((e: unknown) => e)));
      for (const e of errs) {
        expect(e).to.be.instanceOf(ServiceNotFoundError);
        expect((e as Error).message).to.contain("registered: present");
      }
      expect(counter.reads).to.be.at.most(2);
    });
  });

  describe("a server without JetStream", () => {
    let server: NatsServerProcess;
    before(async () => {
      server = await startNatsServer({ jetstream: false });
    });
    after(async () => {
      await server.stop();
    });

    it("getServices fails with JetStreamNotEnabledError saying how to enable it", async () => {
      const { err } = await failure(getServices({ servers: server.url, namespace: uniqueNamespace(), devServer: "never" }));
      expect(err).to.be.instanceOf(JetStreamNotEnabledError);
      expect(err.code).to.equal("JETSTREAM_NOT_ENABLED");
      expect(err.retryable).to.equal(false);
      expect(err.message).to.contain("JetStream off").and.contain("-js");
      expect(err.cause).to.be.instanceOf(Error);
    });
  });

  describe("a server whose account has no JetStream", () => {
    let server: NatsServerProcess;
    before(async () => {
      server = await startNatsServer({
        config: "accounts {\n  WITH_JS: { jetstream: enabled, users: [{ user: a, password: a }] }\n  NO_JS: { users: [{ user: b, password: b }] }\n}\n",
      });
    });
    after(async () => {
      await server.stop();
    });

    it("getServices fails with JetStreamNotEnabledError naming the account setting", async () => {
      const { err } = await failure(getServices({ servers: server.url, namespace: uniqueNamespace(), user: "b", pass: "b", devServer: "never" }));
      expect(err).to.be.instanceOf(JetStreamNotEnabledError);
      expect(err.message).to.contain("not enabled for this NATS account").and.contain("jetstream: enabled");
      const ok = await getServices({ servers: server.url, namespace: uniqueNamespace(), user: "a", pass: "a", devServer: "never" });
      await ok.close();
    });
  });

  describe("a 2-node cluster", () => {
    let cluster: NatsCluster;
    before(async () => {
      cluster = await startNatsCluster(2, "two_nodes");
    });
    after(async () => {
      await cluster.stop();
    });

    it("registryReplicas 3 is refused with the fix: the cluster has 2 JetStream servers", async () => {
      const { err } = await failure(getServices({ servers: cluster.urls[0], namespace: uniqueNamespace(), registryReplicas: 3, devServer: "never" }));
      expect(err).to.be.instanceOf(InvalidOptionsError);
      expect(err.message).to.contain("the cluster has 2 JetStream servers; use registryReplicas: 1 or add a server");
      expect(err.details).to.include({ replicas: 3, servers: 2 });
    });

    it('"auto" picks what the cluster can place: 1 replica on 2 servers', async () => {
      const ns = uniqueNamespace();
      const services = await getServices({ servers: cluster.urls[0], namespace: ns, devServer: "never" });
      try {
        await services.register("svc", Echo);
        expect(await services.list()).to.deep.equal(["svc"]);
        const si = await (await jetstreamManager(services.connection.nc!)).streams.info(`KV_actorbus_${ns}`);
        expect(si.config.num_replicas).to.equal(1);
      } finally {
        await services.close();
      }
    });

    it("when the node holding the bucket dies, a no-responders call fails within its deadline, retryable, never ServiceNotFoundError", async () => {
      const ns = uniqueNamespace("lost");
      const first = await getServices({ servers: cluster.urls[0], namespace: ns, registryReplicas: 1, devServer: "never" });
      await first.close();
      const leader = await bucketLeader(cluster.urls[0], ns);
      const dead = Number(leader.replace(/^n/, ""));
      const survivor = cluster.urls[1 - dead]!;
      const services = await getServices({ servers: survivor, namespace: ns, registryReplicas: 1, devServer: "never" });
      try {
        const live = await services.register("live", Echo);
        await cluster.nodes[dead]!.kill("SIGKILL");

        const { err, ms } = await failure(services.at<Echo>("x", { timeoutMs: 300 }).echo(1));
        expect(err).to.be.instanceOf(ServiceUnavailableError);
        expect(err).not.to.be.instanceOf(ServiceNotFoundError);
        expect(err.retryable).to.equal(true);
        expect(err.message).to.contain('whether "x" is registered');
        expect(err.cause).to.be.instanceOf(Error);
        expect(ms).to.be.below(300 + 250);

        // A storm of such calls shares one registry read and every one ends by its deadline.
        const counter = countReads(services.connection.nc!, `actorbus_${ns}`);
        const t0 = performance.now();
        const storm = await Promise.all(Array.from({ length: 300 }, () => services.at<Echo>("y", { timeoutMs: 300 }).echo(1).catch((e: unknown) => e)));
        expect(performance.now() - t0).to.be.below(300 + 400);
        for (const e of storm) {
          expect(e).to.be.instanceOf(ServiceUnavailableError);
          expect((e as ActorBusError).retryable).to.equal(true);
        }
        expect(counter.reads).to.be.at.most(1);

        // The service itself lives on the surviving node and still answers.
        expect(await live.echo(7)).to.equal(7);

        // list() cannot read the registry: a retryable ServiceUnavailableError, not a raw JetStream error.
        const listed = await failure(services.list());
        expect(listed.err).to.be.instanceOf(ServiceUnavailableError);
        expect(listed.err.retryable).to.equal(true);
        expect(listed.err.cause).to.be.instanceOf(Error);
      } finally {
        await services.close();
      }
    });
  });

  describe("a 3-node cluster that loses quorum", () => {
    let cluster: NatsCluster;
    before(async () => {
      cluster = await startNatsCluster(3, "three_nodes");
    });
    after(async () => {
      await cluster.stop();
    });

    it("auto places 3 replicas; when the stream leader and one more node die, list() and register() fail with retryable ServiceUnavailableError", async () => {
      const ns = uniqueNamespace("quorum");
      const first = await getServices({ servers: cluster.urls[0], namespace: ns, devServer: "never" });
      const si = await (await jetstreamManager(first.connection.nc!)).streams.info(`KV_actorbus_${ns}`);
      expect(si.config.num_replicas).to.equal(3);
      await first.close();
      // The client stays on a follower: a leader that lost quorum may go on answering reads for
      // a while, which is a right answer, not the fault this test is about.
      const leader = Number((await bucketLeader(cluster.urls[0], ns)).replace(/^n/, ""));
      const keep = [0, 1, 2].find((i) => i !== leader)!;
      const services = await getServices({ servers: cluster.urls[keep], namespace: ns, devServer: "never" });
      try {
        await services.register("svc", Echo);
        await Promise.all([0, 1, 2].filter((i) => i !== keep).map((i) => cluster.nodes[i]!.kill("SIGKILL")));
        for (const op of [() => services.list(), () => services.register("other", Echo)]) {
          const { err } = await failure(op());
          expect(err, String(err)).to.be.instanceOf(ActorBusError);
          expect(err).to.be.instanceOf(ServiceUnavailableError);
          expect(err.retryable).to.equal(true);
          expect(err.cause).to.be.instanceOf(Error);
        }
        // The live service is hosted here and still answers through a lazy handle.
        expect(await services.at<Echo>("svc", { timeoutMs: 1_000 }).echo(3)).to.equal(3);
      } finally {
        await services.close();
      }
    });
  });
});
