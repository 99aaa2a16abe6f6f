import { expect } from "chai";
import { ReplicaCrashedError, ClosedError, ServiceUnavailableError } from "../../src/errors/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { createDirectRoutes, decodeRouteTable, encodeRouteTable } from "../../src/registry/direct-routes.ts";
import type { ServiceProxy } from "../../src/service/index.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { replicaPids } from "../helpers/replicas.ts";
import { HeldActor } from "../fixtures/replicas/held-actor.ts";

/** Messages that reach the service's registry face (its call subject), counted by a plain subscriber. */
function faceCounter(services: Services, name: string) {
  let n = 0;
  const sub = services.connection.transport.subscribe(subjectsFor(services.namespace).call(name), () => n++);
  return {
    get count() {
      return n;
    },
    stop: () => sub.unsubscribe(),
  };
}

describe("registry handles route straight to a replicated service's replicas", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace("direct");
  let services: Services;
  const launched: ServiceProxy<HeldActor>[] = [];

  before(async () => {
    services = await getServices({ namespace: ns, servers: testUrl() });
  });

  after(async () => {
    await services?.close();
    for (const s of launched) await s.shutdown().catch(() => {});
    expect(replicaPids(ns), "replica processes after shutdown").to.deep.equal([]);
  });

  const launch = async (meshName: string, options: Record<string, unknown> = {}) => {
    const svc = await HeldActor.options({ meshName, numReplicas: 2, maxConcurrency: 8, services, ...options }).asService();
    launched.push(svc);
    return svc;
  };

  /** Calls until one reaches a replica without passing the service's registry face (the table is in). */
  const routedDirectly = async (name: string, call: () => Promise<unknown>) => {
    const face = faceCounter(services, name);
    await services.connection.transport.flush();
    await until(async () => {
      const before = face.count;
      await call();
      return face.count === before;
    }, 10_000, "direct routing");
    face.stop();
  };

  it("sends calls to the replicas, not through the registry face, spread over both", async () => {
    const svc = await launch("spread");
    const handle = await services.get<HeldActor>("spread");
    await handle.pid(); // starts following the route table
    const face = faceCounter(services, "spread");
    await services.connection.transport.flush();
    // Until the table is in, calls may still go through the face: wait for a round with none.
    await until(async () => {
      const before = face.count;
      await Promise.all(Array.from({ length: 20 }, () => handle.pid()));
      return face.count === before;
    }, 10_000, "calls routed without the face");
    const pids = new Set(await Promise.all(Array.from({ length: 64 }, () => handle.hold(5))));
    expect([...pids].sort()).to.deep.equal(svc.status().replicas.flatMap((r) => r.pids).sort());
    face.stop();
    // The controller did not route these; the replicas' own figures (from the heartbeat) count them.
    const served = () => svc.status().replicas.reduce((n, r) => n + (r.served?.calls ?? 0), 0);
    await until(() => served() >= 64, 10_000, "the replicas' served counts at a heartbeat");
    for (const r of svc.status().replicas) expect(r.served!.p99Ms).to.be.a("number");
  });

  it("a replica killed mid-call: the call runs again on a live one while maxTaskRetries allows", async () => {
    const svc = await launch("retried", { numReplicas: 1, maxTaskRetries: 1, timeoutMs: 20_000 });
    const handle = await services.get<HeldActor>("retried");
    await routedDirectly("retried", () => handle.pid());
    const [victim] = svc.status().replicas[0]!.pids;
    const held = handle.hold(1_000);
    await until(async () => (await handle.startedCount()) > 0, 5_000, "the call started on the replica");
    process.kill(victim!, "SIGKILL");
    const pid = await held;
    expect(pid).to.not.equal(victim);
  });

  it("without retries, a replica killed mid-call fails the call at once with ReplicaCrashedError", async () => {
    const svc = await launch("crashed", { numReplicas: 1, maxTaskRetries: 0, timeoutMs: 20_000 });
    const handle = await services.get<HeldActor>("crashed");
    await routedDirectly("crashed", () => handle.pid());
    const [victim] = svc.status().replicas[0]!.pids;
    const t0 = Date.now();
    const held = handle.hold(10_000).then(
      () => undefined,
      (e: unknown) => e,
    );
    await until(async () => (await handle.startedCount().catch(() => 0)) > 0, 5_000, "the call started on the replica");
    process.kill(victim!, "SIGKILL");
    const err = await held;
    expect(err).to.be.instanceOf(ReplicaCrashedError);
    expect(Date.now() - t0, "failed well before the deadline").to.be.below(8_000);
  });

  it("a function router keeps calls on the registry face, which runs it", async () => {
    await launch("custom", { router: (candidates: readonly { index: number }[]) => candidates.find((c) => c.index === 1) });
    const handle = await services.get<HeldActor>("custom");
    const face = faceCounter(services, "custom");
    await services.connection.transport.flush();
    const pids = new Set<number>();
    for (let i = 0; i < 30; i++) pids.add(await handle.pid());
    expect(pids.size, "the router's choice: replica 1 only").to.equal(1);
    await until(() => face.count >= 30, 5_000, "every call through the face");
    face.stop();
  });

  it("after shutdown, calls through the handle fail with a typed error, not a hang", async () => {
    const svc = await launch("stopped", { timeoutMs: 3_000 });
    const handle = await services.get<HeldActor>("stopped");
    await handle.pid();
    await svc.shutdown();
    const err = await handle.pid().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.satisfy((e: unknown) => e instanceof ServiceUnavailableError || e instanceof ClosedError || (e as { code?: string })?.code === "SERVICE_NOT_FOUND");
  });

  it("ignores stray or malformed route tables and older epochs", async () => {
    const { codec, transport } = services.connection;
    const subjects = subjectsFor(ns);
    expect(decodeRouteTable(codec, new Uint8Array([1, 2, 3]))).to.equal(undefined);
    expect(decodeRouteTable(codec, codec.encode({ v: 2 }))).to.equal(undefined);
    expect(decodeRouteTable(codec, codec.encode({ v: 1, controller: "c", epoch: 1, direct: true, router: "fastest", capacity: 1, retries: 0, replicas: [], refreshMs: 1000 }))).to.equal(undefined);
    const good = { v: 1 as const, controller: "c", epoch: 3, direct: true, router: "least-loaded" as const, capacity: 4, retries: 0, replicas: [[0, 0, "nowhere.x", 1, null] as [number, number, string, 0 | 1, number | null]], refreshMs: 1000 };
    expect(decodeRouteTable(codec, encodeRouteTable(codec, good))).to.deep.equal(good);
    // A table naming a replica nobody serves: the call finds no one there and goes to the face instead.
    const d = createDirectRoutes({ conn: services.connection, subjects, service: "ghost" });
    transport.publish(subjects.routes("ghost"), encodeRouteTable(codec, good));
    await transport.flush();
    // A plain subscriber, not a host: it cannot answer a batch, so the calls go one at a time.
    const face = transport.subscribe(subjects.call("ghost"), (m) => m.respond(codec.encode([0, "face"])));
    await transport.flush();
    const call = (id: string) => d.send(codec.encode([]), { method: "m", callId: id, deadline: Date.now() + 2_000, meta: undefined, signal: undefined }, subjects.call("ghost"));
    let first: Promise<Uint8Array> | undefined;
    await until(() => (first = call("x1")) !== undefined, 5_000, "table applied");
    expect(codec.decode(await first!)).to.deep.equal([0, "face"]);
    // The replica nobody answered on is skipped until a newer table lists it; an older one changes nothing.
    expect(call("x2")).to.equal(undefined);
    transport.publish(subjects.routes("ghost"), encodeRouteTable(codec, { ...good, epoch: 2 }));
    await transport.flush();
    await new Promise((r) => setTimeout(r, 50));
    expect(call("x3")).to.equal(undefined);
    transport.publish(subjects.routes("ghost"), encodeRouteTable(codec, { ...good, epoch: 4 }));
    let again: Promise<Uint8Array> | undefined;
    await until(() => (again = call("x4")) !== undefined, 5_000, "newer table applied");
    expect(codec.decode(await again!)).to.deep.equal([0, "face"]);
    face.unsubscribe();
    d.close();
  });
});
