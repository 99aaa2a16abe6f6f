import { expect } from "chai";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";
import { replicaPids } from "../helpers/replicas.ts";

const EXAMPLE = fileURLToPath(new URL("../../examples/observe/dashboard.ts", import.meta.url));

describe("examples/observe/dashboard.ts", function () {
  this.timeout(120_000);
  it("serves the dashboard over an agent, a service, an actor, inference and an executor under load, through a replica kill", async () => {
    const ns = uniqueNamespace("obs");
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", EXAMPLE, "--seconds", "6", "--port", "0"], {
      env: { ...process.env, NATS_URL: testUrl(), ACTORBUS_EXAMPLE_NAMESPACE: ns },
      timeout: 110_000,
    });
    expect(stdout).to.match(/^dashboard at http:\/\/127\.0\.0\.1:\d+\/$/m);
    expect(stdout).to.contain("counter (service, 2/2 healthy)");
    expect(stdout).to.contain("policy (inference, 1/1 healthy)");
    expect(stdout).to.contain("python (executor, 1/1 healthy)");
    expect(stdout).to.contain("tokenizer (actor, 1/1 healthy)");
    expect(stdout).to.match(/restarts seen: 1; events: \d+/);
    expect(stdout).to.match(/done\n$/);
    expect(replicaPids(ns)).to.deep.equal([]);
  });
});
