import { expect } from "chai";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { getServices, type Services } from "../../src/index.ts";
import { openKvStore } from "../../src/registry/kv-store.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";

class Echo {
  echo(v: unknown) {
    return v;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe("registry growth (issue 16, item 4)", function () {
  this.timeout(120_000);
  let services: Services;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let ns: string;
  const stream = () => `KV_actorbus_${ns}`;
  /** Subjects the bucket's stream still holds: live keys plus any marker not yet purged. */
  const subjectsHeld = async () => Object.keys((await jsm.streams.info(stream(), { subjects_filter: ">" })).state.subjects ?? {}).length;
  const consumers = async () => (await jsm.streams.info(stream())).state.consumer_count;
  const timeList = async (runs = 7) => {
    const ms: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await services.list();
      ms.push(performance.now() - t0);
    }
    return median(ms);
  };

  beforeEach(async () => {
    ns = uniqueNamespace("growth");
    services = await getServices({ namespace: ns, servers: testUrl(), devServer: "never" });
    nc = await connect({ servers: testUrl() });
    jsm = await jetstreamManager(nc);
  });
  afterEach(async () => {
    await services.reset();
    await services.close();
    await nc.close();
  });

  it("list(), has() and remove() create no JetStream consumer: the server's count is flat across 200 list() calls", async () => {
    expect(await services.list()).to.deep.equal([]);
    await services.register("a", Echo);
    await services.register("b", Echo);
    const before = await consumers();
    // Every consumer the registry asks the server for, even one deleted again at once.
    let created = 0;
    const registryNc = services.connection.nc!;
    const request = registryNc.request.bind(registryNc);
    registryNc.request = ((subject: string, ...rest: unknown[]) => {
      if (subject.startsWith("$JS.API.CONSUMER.CREATE") || subject.startsWith("$JS.API.CONSUMER.DURABLE.CREATE")) created++;
      return (request as (...a: unknown[]) => ReturnType<NatsConnection["request"]>)(subject, ...rest);
    }) as NatsConnection["request"];
    const during: number[] = [];
    for (let i = 0; i < 200; i++) {
      expect(await services.list()).to.deep.equal(["a", "b"]);
      if (i % 50 === 0) during.push(await consumers());
    }
    expect(created).to.equal(0);
    expect(during.every((c) => c === before)).to.equal(true);
    for (let i = 0; i < 20; i++) {
      await services.register(`tmp${i}`, Echo);
      expect(await services.has(`tmp${i}`)).to.equal(true);
      await services.remove(`tmp${i}`);
    }
    expect(created).to.equal(0);
    expect(await consumers()).to.equal(before);
  });

  it("removed names leave nothing in the stream once their markers' grace passes, and a watch still sees the removal", async () => {
    const watch = services.watch();
    await watch.ready();
    const seen: string[] = [];
    const reading = (async () => {
      for await (const ev of watch) if (ev.type === "removed") seen.push(ev.name);
    })();
    await services.register("keep", Echo);
    const baseline = await subjectsHeld(); // svc.keep and its instance key
    for (let i = 0; i < 20; i++) {
      await services.register(`gone${i}`, Echo);
      await services.remove(`gone${i}`);
    }
    await until(async () => seen.length === 20, 10_000, "20 removed events");
    await until(async () => (await subjectsHeld()) === baseline, 10_000, "the markers of 20 removed names purged");
    expect(await services.list()).to.deep.equal(["keep"]);
    // A name registered again right after its removal is not hit by the later purge of its marker.
    await services.register("again", Echo);
    await services.remove("again");
    await services.register("again", Echo);
    await new Promise((r) => setTimeout(r, 2_500));
    expect(await services.list()).to.deep.equal(["again", "keep"]);
    await watch.close();
    await reading;
  });

  it("list() costs what is live: 3,000 removed names later it is as fast as before", async () => {
    await services.register("a", Echo);
    await services.register("b", Echo);
    const before = await timeList();
    // Bulk writes through a store of their own (what thousands of register/remove cycles leave).
    const store = await openKvStore(nc, `actorbus_${ns}`, { replicas: 1, clustered: false, markerGraceMs: 100 });
    const names = Array.from({ length: 3_000 }, (_, i) => `n${i}`);
    for (let i = 0; i < names.length; i += 250) {
      await Promise.all(names.slice(i, i + 250).map((n) => store.create(`svc.${n}`, new Uint8Array([123, 125]))));
    }
    for (let i = 0; i < names.length; i += 250) {
      await Promise.all(names.slice(i, i + 250).map((n) => store.delete(`svc.${n}`)));
    }
    await until(async () => (await subjectsHeld()) === 4, 30_000, "3,000 markers purged"); // svc.a, svc.b and their instances
    const after = await timeList();
    expect(await services.list()).to.deep.equal(["a", "b"]);
    expect(after).to.be.below(50);
    expect(after).to.be.below(before * 3 + 10);
  });

  it("markers an older writer left behind are purged the first time a read meets them", async () => {
    await services.register("a", Echo);
    // @nats-io/kv's own purge, with nobody to purge the markers afterwards.
    const kv = await new Kvm(nc).open(`actorbus_${ns}`);
    for (let i = 0; i < 50; i++) {
      await kv.put(`svc.old${i}`, new Uint8Array([123, 125]));
      await kv.purge(`svc.old${i}`);
    }
    expect(await subjectsHeld()).to.equal(2 + 50);
    await new Promise((r) => setTimeout(r, 2_100)); // older than the grace a watch gets
    expect(await services.list()).to.deep.equal(["a"]);
    await until(async () => (await subjectsHeld()) === 2, 10_000, "the 50 old markers purged");
  });
});
