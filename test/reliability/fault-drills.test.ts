import { expect } from "chai";
import { agentReturn, lameDuckMove, replicaFreeze } from "../helpers/drills.ts";

const show = (r: { attempted: number; succeeded: number; errors: Record<string, number>; extra?: Record<string, unknown> }) =>
  console.log(`      ${r.attempted} calls, ${r.succeeded} ok, errors ${JSON.stringify(r.errors)}, ${JSON.stringify(r.extra)}`);

describe("drills: frozen replica, lame-duck move, agent lost and back (issue 16, items 2, 5, 6)", function () {
  this.timeout(240_000);

  it("a replica SIGSTOPped under load: ejected after its first timeouts, at most 1% of calls fail, none after the ejection", async () => {
    const r = await replicaFreeze({ clients: 2, lanes: 4, loadMs: 1_500, outageMs: 5_000, callTimeoutMs: 2_000 });
    show(r);
    expect(r.attempted).to.be.above(1_000);
    expect(r.extra!.ejectedAfterMs).to.be.within(0, 4_000);
    expect(r.extra!.failuresAfterEjection).to.equal(0);
    expect(r.failedTyped + r.failedUntyped + r.hung).to.be.at.most(r.attempted * 0.01);
    expect(r.failedUntyped).to.equal(0);
    expect(r.hung).to.equal(0);
    expect(r.wrongAnswers).to.equal(0);
    expect(r.extra!.backInRoutingAfterThawMs).to.be.below(10_000);
  });

  it("the server of an agent, a controller, its replicas and a client enters lame-duck mode under load: no call fails", async () => {
    const r = await lameDuckMove({ clients: 2, lanes: 4, loadMs: 1_500, outageMs: 0 });
    show(r);
    expect(r.attempted).to.be.above(1_000);
    expect(r.errors).to.deep.equal({});
    expect(r.succeeded).to.equal(r.attempted);
    expect(r.hung).to.equal(0);
    expect(r.extra!.clientsMoved).to.be.at.least(1);
  });

  it("an agent SIGKILLed under load and back with the same --host-id: full replicas within 5 s of its return, no wrong answers", async () => {
    const r = await agentReturn({ clients: 2, lanes: 4, loadMs: 1_500, outageMs: 2_000 });
    show(r);
    expect(r.extra!.fullReplicasAfterReturnMs).to.be.within(0, 5_000);
    expect(r.extra!.reasonWhileAway).to.match(/waiting for capacity/);
    expect(r.wrongAnswers).to.equal(0);
    expect(r.failedUntyped).to.equal(0);
    expect(r.hung).to.equal(0);
    expect(r.successRate).to.be.at.least(0.999);
  });
});
