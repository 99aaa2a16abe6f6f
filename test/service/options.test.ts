import { expect } from "chai";
import { InvalidOptionsError, PlacementError } from "../../src/errors/index.ts";
import { Actor, placeService, resolveServiceOptions, SERVICE_DEFAULTS } from "../../src/service/index.ts";
import { Counter } from "../fixtures/replicas/counter.ts";

// Not exported: replica processes could not import it.
class Hidden extends Actor {
  async hi(): Promise<string> {
    return "hi";
  }
}

describe("service options and placement (no processes)", () => {
  it("has the seed's defaults", () => {
    const r = resolveServiceOptions({});
    expect(r).to.include({ numReplicas: 1, procs: 1, hosts: null, withGpus: false, meshName: null, routing: "least-loaded", placement: "auto" });
    expect(SERVICE_DEFAULTS.maxTaskRetries).to.equal(0);
  });

  it("options() returns a separate configured subclass per call; configurations coexist", () => {
    const A = Counter.options({ numReplicas: 2 });
    const B = Counter.options({ numReplicas: 3, procs: 2 });
    expect(A).to.not.equal(B);
    expect(A.name).to.equal("Counter");
    expect(new A(1)).to.be.instanceOf(Counter);
    const AB = A.options({ maxTaskRetries: 1 });
    expect(new AB(5).v).to.equal(5);
    // An Actor knows its place: rank 0 of 1 outside a replica.
    const c = new Counter();
    expect([c.rank, c.size]).to.deep.equal([0, 1]);
  });

  it("rejects bad options with messages that name the fix", () => {
    expect(() => Counter.options({ numReplicas: 0 })).to.throw(InvalidOptionsError, /numReplicas must be an integer >= 1/);
    expect(() => Counter.options({ procs: 3, hosts: 2 })).to.throw(InvalidOptionsError, /multiple of hosts/);
    expect(() => Counter.options({ nope: 1 } as never)).to.throw(InvalidOptionsError, /unknown option "nope"/);
    expect(() => Counter.options({ routing: "queue-group", procs: 2 })).to.throw(InvalidOptionsError, /needs procs 1/);
    expect(() => Counter.options({ version: "v1" })).to.throw(InvalidOptionsError, /semantic version/);
    expect(() => Counter.options({ meshName: "a.b" })).to.throw(/invalid service name/);
    expect(() => (Actor as any).options({})).to.throw(InvalidOptionsError, /subclass of Actor/);
  });

  it("refuses a class that is not exported from its module, before starting anything", async () => {
    try {
      await Hidden.options({ servers: "nats://127.0.0.1:1" }).asService();
      expect.fail("should have thrown");
    } catch (err) {
      expect(err).to.be.instanceOf(InvalidOptionsError);
      expect((err as Error).message).to.match(/Hidden must be exported from its module/).and.match(/static module = import\.meta\.url/);
    }
  });

  it("spreads replicas over hosts, most free first", () => {
    const hosts = ["a", "b", "c"].map((hostId) => ({ hostId, freeCpus: 2, freeGpus: 0 }));
    const plan = placeService(hosts, { procs: 1, hosts: null, withGpus: false }, 3);
    expect(plan.map((p) => p[0]!.hostId).sort()).to.deep.equal(["a", "b", "c"]);
    expect(hosts[0]!.freeCpus).to.equal(2); // the input is not consumed
  });

  it("splits a replica over `hosts` hosts, and packs procs on one host when hosts is null", () => {
    const hosts = ["a", "b"].map((hostId) => ({ hostId, freeCpus: 4, freeGpus: 0 }));
    expect(placeService(hosts, { procs: 4, hosts: 2, withGpus: false }, 1)[0]).to.deep.equal([
      { hostId: "a", ranks: [0, 1] },
      { hostId: "b", ranks: [2, 3] },
    ]);
    expect(placeService(hosts, { procs: 3, hosts: null, withGpus: false }, 1)[0]).to.deep.equal([{ hostId: "a", ranks: [0, 1, 2] }]);
    // Too big for one host: as few hosts as it takes.
    expect(placeService(hosts, { procs: 6, hosts: null, withGpus: false }, 1)[0]!.map((h) => h.ranks.length)).to.deep.equal([4, 2]);
  });

  it("names what is missing when placement cannot be met", () => {
    const hosts = [{ hostId: "a", freeCpus: 2, freeGpus: 0 }];
    expect(() => placeService(hosts, { procs: 1, hosts: null, withGpus: true }, 1)).to.throw(PlacementError, /needs 1 GPU\(s\).*0 free.*a: 2 process slots, 0 GPUs free/);
    expect(() => placeService(hosts, { procs: 1, hosts: null, withGpus: false }, 3)).to.throw(PlacementError, /replica 3 of 3.*needs 1 process slot\(s\), 0 free/);
    expect(() => placeService(hosts, { procs: 2, hosts: 2, withGpus: false }, 1)).to.throw(PlacementError, /needs 2 hosts with 1 free process slot\(s\) each, 1 qualify/);
  });
});
