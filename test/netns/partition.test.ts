import { expect } from "chai";
import { netnsUnavailable } from "../helpers/netns.ts";
import { networkPartition } from "../helpers/scenarios.ts";

/**
 * The fault a SIGKILL cannot show: a host whose packets stop without a TCP reset, so the server
 * and the callers only learn of it from missed pings and deadlines. Shared with
 * `npm run bench:faults`, which prints the same counts.
 */
describe("faults under load: network partition of one host", function () {
  this.timeout(90_000);

  before(function () {
    const missing = netnsUnavailable();
    if (missing) {
      console.log(`    skipped: ${missing}`);
      this.skip();
    }
  });

  it("keeps calls succeeding through the other host: nothing hangs past its deadline, >= 99% succeed, registry intact", async () => {
    const r = await networkPartition({ clients: 2, lanes: 4, loadMs: 1_000, outageMs: 4_000 });
    console.log(
      `      ${r.scenario}: attempted ${r.attempted}, succeeded ${r.succeeded} (${(r.successRate * 100).toFixed(2)}%), ` +
        `failed typed ${r.failedTyped}, untyped ${r.failedUntyped}, hung ${r.hung}, retries ${r.retries}, errors ${JSON.stringify(r.errors)}, ` +
        `registry ${r.registryBefore.length} -> ${r.registryAfter.length}, recovery ${r.recoveryMs} ms`,
    );
    expect(r.attempted).to.be.greaterThan(200);
    expect(r.hung).to.equal(0);
    expect(r.failedUntyped).to.equal(0);
    expect(r.successRate).to.be.at.least(0.99);
    expect(r.registryAfter).to.deep.equal(["pid"]);
  });
});
