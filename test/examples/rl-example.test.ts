import { expect } from "chai";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";
import { replicaPids } from "../helpers/replicas.ts";

const EXAMPLE = fileURLToPath(new URL("../../examples/rl/trainer-loop.ts", import.meta.url));

describe("examples/rl/trainer-loop.ts", function () {
  this.timeout(90_000);
  it("rolls five weight versions to three replicas while two rollout workers act with minVersion: nothing fails, goes back or sees half-updated weights", async () => {
    const namespace = uniqueNamespace("rlex");
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", EXAMPLE], {
      env: { ...process.env, NATS_URL: testUrl(), ACTORBUS_EXAMPLE_NAMESPACE: namespace },
      timeout: 80_000,
    });
    for (let v = 1; v <= 5; v++) expect(stdout).to.match(new RegExp(`\\[trainer\\] v${v} rolled to 3 replicas in \\d+ ms while \\d+ rollout steps were served; versions now ${v},${v},${v}`));
    for (const id of [1, 2]) expect(stdout).to.match(new RegExp(`\\[rollout ${id}\\] \\d+ steps on versions [\\d,]*5: went back 0 times, 0 half-updated`));
    expect(stdout).to.contain("[trainer] done: 5 versions rolled, 0 failed calls");
    expect(replicaPids(namespace)).to.deep.equal([]);
  });
});
