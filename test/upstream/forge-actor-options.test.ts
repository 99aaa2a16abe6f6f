import { expect } from "chai";
import { InvalidOptionsError } from "../../src/errors/index.ts";
import { Actor, SERVICE_DEFAULTS, type ServiceProxy } from "../../src/service/index.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";
import { replicaPids } from "../helpers/replicas.ts";

// TorchForge's ForgeActor: options() returns a subclass whose configuration is readable as class
// attributes (procs, hosts, with_gpus, num_replicas, mesh_name), with defaults on the base class.
describe("ForgeActor.options(): configured values as static properties (upstream)", () => {
  it("the base class and an unconfigured subclass carry ForgeActor's defaults", () => {
    for (const cls of [Actor, Counter]) {
      expect(cls.procs).to.equal(1);
      expect(cls.hosts).to.equal(null);
      expect(cls.withGpus).to.equal(false);
      expect(cls.numReplicas).to.equal(1);
      expect(cls.meshName).to.equal(null);
    }
    expect(Actor.procs).to.equal(SERVICE_DEFAULTS.procs);
  });

  it("every key passed is a static of the returned class; unset class attributes keep their defaults", () => {
    const Cls = Counter.options({ numReplicas: 2, procs: 4, hosts: 2, withGpus: true, meshName: "counters", timeoutMs: 5_000, maxConcurrency: 3, metadata: { team: "rl" } });
    expect(Cls.numReplicas).to.equal(2);
    expect(Cls.procs).to.equal(4);
    expect(Cls.hosts).to.equal(2);
    expect(Cls.withGpus).to.equal(true);
    expect(Cls.meshName).to.equal("counters");
    expect(Cls.timeoutMs).to.equal(5_000);
    expect(Cls.maxConcurrency).to.equal(3);
    expect(Cls.metadata).to.deep.equal({ team: "rl" });
    expect(Cls.maxTaskRetries).to.equal(undefined); // not passed, and not a ForgeActor class attribute

    const Few = Counter.options({ numReplicas: 3 });
    expect([Few.numReplicas, Few.procs, Few.hosts, Few.withGpus, Few.meshName]).to.deep.equal([3, 1, null, false, null]);
    // The original class is untouched.
    expect(Counter.numReplicas).to.equal(1);
    expect(Object.hasOwn(Counter, "numReplicas")).to.equal(false);
  });

  it("each call makes its own class; chained calls merge, and an explicit undefined is the default again", () => {
    const A = Counter.options({ numReplicas: 2 });
    const B = Counter.options({ procs: 2 });
    expect([A.numReplicas, A.procs]).to.deep.equal([2, 1]);
    expect([B.numReplicas, B.procs]).to.deep.equal([1, 2]);
    const AB = A.options({ procs: 2, maxTaskRetries: 1 });
    expect([AB.numReplicas, AB.procs, AB.maxTaskRetries]).to.deep.equal([2, 2, 1]);
    expect(A.procs).to.equal(1);
    expect(A.options({ numReplicas: undefined }).numReplicas).to.equal(1);
    expect(new AB(7)).to.be.instanceOf(Counter);
    expect(AB.name).to.equal("Counter");
  });

  it("configured statics are read-only: configure again with options()", () => {
    const Cls = Counter.options({ numReplicas: 2 });
    expect(() => {
      (Cls as { numReplicas: number }).numReplicas = 5;
    }).to.throw(TypeError);
    expect(Cls.numReplicas).to.equal(2);
  });

  it("a subclass may declare class attributes, as a ForgeActor subclass does; options() overrides them", () => {
    class ThreeProcs extends Counter {
      static override procs = 3;
    }
    expect(ThreeProcs.options({ numReplicas: 2 }).procs).to.equal(3);
    // The declared attribute takes part in validation, as it would at launch.
    expect(() => ThreeProcs.options({ hosts: 2 })).to.throw(InvalidOptionsError, /procs \(3\) must be a multiple of hosts \(2\)/);
    expect(ThreeProcs.options({ procs: 4, hosts: 2 }).procs).to.equal(4);
  });
});

describe("a configured class still launches (asService/asActor) with its configuration", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace("fopts");
  let svc: ServiceProxy<Counter> | undefined;

  after(async () => {
    await svc?.shutdown();
    expect(replicaPids(ns), "replica processes after shutdown").to.deep.equal([]);
  });

  it("asService() of Counter.options({ numReplicas: 1, meshName }) serves calls under that name", async () => {
    const Cls = Counter.options({ numReplicas: 1, procs: 1, meshName: "forge_counter", servers: testUrl(), namespace: ns });
    expect(Cls.meshName).to.equal("forge_counter");
    svc = await Cls.asService(10);
    expect(await svc.incr(5)).to.equal(15);
    const st = svc.status();
    expect(st.name).to.equal("forge_counter");
    expect(st.replicas).to.have.length(Cls.numReplicas);
    expect(st.replicas[0]!.pids).to.have.length(Cls.procs);
    expect((await svc.whoami()).size).to.equal(1);
  });
});
