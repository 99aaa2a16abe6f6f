import { expect } from "chai";
import { registryQuorumLoss } from "../helpers/scenarios.ts";

describe("drill: the registry loses quorum while the service's only host dies, under load (issue 16, item 1)", function () {
  this.timeout(180_000);

  for (const bucketReplicas of [3, 1] as const) {
    it(`bucket with ${bucketReplicas} replica(s): no wrong answers, every failure typed and retryable, none hung, calls back once a host is`, async () => {
      const r = await registryQuorumLoss({ clients: 2, lanes: 4, loadMs: 1_000, outageMs: 2_000, bucketReplicas });
      console.log(`      ${r.attempted} calls, ${r.succeeded} ok, errors ${JSON.stringify(r.errors)}, recovery ${r.recoveryMs} ms`);
      expect(r.attempted).to.be.above(100);
      expect(r.wrongAnswers, JSON.stringify(r.errors)).to.equal(0);
      expect(r.errors.SERVICE_NOT_FOUND ?? 0).to.equal(0);
      expect(r.failedUntyped).to.equal(0);
      expect(r.hung).to.equal(0);
      expect(r.registryAfter).to.deep.equal(["pid"]);
      expect(r.successRate).to.be.at.least(0.99);
    });
  }
});
