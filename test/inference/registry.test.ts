import { expect } from "chai";
import { InvalidOptionsError } from "../../src/errors/index.ts";
import {
  InferenceEndpoint,
  inferenceClient,
  InferenceServer,
  InProcessTransport,
  NatsTransport,
  registerInference,
  type TensorRecord,
} from "../../src/inference/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { doubling, obs } from "./helpers.ts";

class Echo {
  echo(x: string): string {
    return x;
  }
}

describe("inference servers in the registry (nats)", function () {
  this.timeout(20_000);
  let ns: string;
  let services: Services;
  let users: Services;
  beforeEach(async () => {
    ns = uniqueNamespace("inf");
    services = await getServices({ namespace: ns, servers: testUrl() });
    users = await getServices({ namespace: ns, servers: testUrl() });
  });
  afterEach(async () => {
    await services.reset();
    await Promise.all([users.close(), services.close()]);
  });

  it("registerInference makes a server findable by name; inferenceClient then calls its subject directly", async () => {
    const server = new InferenceServer(doubling, new NatsTransport({ connection: services.connection, namespace: ns, name: "policy-srv" }), { maxBatchSize: 32 }).start();
    await server.ready();
    await registerInference(services, "policy", server);
    expect(await users.has("policy")).to.equal(true);
    expect((await users.describe("policy"))?.metadata).to.include({ kind: "inference", inferenceName: "policy-srv" });

    await using client = await inferenceClient<TensorRecord, TensorRecord>(users, "policy");
    expect(client.route).to.equal("direct");
    const results = await Promise.all([1, 2, 3].map((v) => client.call(obs(v))));
    expect(results.map((r) => (r.action as Float32Array)[0])).to.deep.equal([2, 4, 6]);

    // The handle works too (one hop through the registered actor), in batches.
    const h = await users.get<InferenceEndpoint<TensorRecord, TensorRecord>>("policy");
    const viaHandle = await Promise.all(Array.from({ length: 16 }, (_, i) => h.call(obs(i))));
    expect(viaHandle.map((r) => (r.action as Float32Array)[0])).to.deep.equal(Array.from({ length: 16 }, (_, i) => 2 * i));
    const stats = await h.stats();
    expect(stats.requests).to.equal(19);
    expect(await h.describe()).to.include({ kind: "inference", subject: `ab.${ns}.inf.policy-srv`, maxBatchSize: 32 });
  });

  it("a plain services.register of InferenceEndpoint is found too, and removing the service shuts the server down", async () => {
    const server = new InferenceServer(doubling, new NatsTransport({ connection: services.connection, namespace: ns, name: "p2" })).start();
    await server.ready();
    await services.register("p2", InferenceEndpoint, server);
    await using client = await inferenceClient<TensorRecord, TensorRecord>(users, "p2");
    expect(client.route).to.equal("direct");
    expect((await client.call(obs(21))).action).to.deep.equal(new Float32Array([42]));
    await users.remove("p2");
    await until(() => !server.isRunning, 5_000, "server shut down");
  });

  it("an in-process server is reachable through its handle", async () => {
    const server = new InferenceServer(doubling, new InProcessTransport()).start();
    await registerInference(services, "local-policy", server);
    await using client = await inferenceClient<TensorRecord, TensorRecord>(users, "local-policy");
    expect(client.route).to.equal("handle");
    expect((await client.call(obs(3))).action).to.deep.equal(new Float32Array([6]));
  });

  it("inferenceClient refuses a service that is not an inference server", async () => {
    await services.register("echo", Echo);
    const err = await inferenceClient(users, "echo").catch((e: Error) => e);
    expect(err).to.be.instanceOf(InvalidOptionsError);
    expect((err as Error).message).to.match(/not an inference server \(class Echo\)/);
  });
});
