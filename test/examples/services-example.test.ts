import { expect } from "chai";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";

const EXAMPLE = fileURLToPath(new URL("../../examples/services/distributed-services.ts", import.meta.url));

describe("examples/services/distributed-services.ts (npm start)", function () {
  this.timeout(60_000);
  it("registers, rejects the duplicate, serves three worker processes and resets", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", EXAMPLE], {
      env: { ...process.env, NATS_URL: testUrl(), ACTORBUS_EXAMPLE_NAMESPACE: uniqueNamespace("ex") },
    });
    expect(stdout).to.contain("[main] registered tokenizer");
    expect(stdout).to.contain("duplicate rejected: service \"tokenizer\" is already registered");
    expect(stdout).to.contain("[main] services: embedder, tokenizer");
    for (const id of [1, 2, 3]) expect(stdout).to.match(new RegExp(`\\[worker ${id}\\] pid \\d+: 19 tokens -> embedding\\[8\\] via tiny-embed`));
    expect(stdout).to.contain("[main] embedder served 3 calls from 3 workers");
    expect(stdout).to.contain("[main] after reset: []");
  });
});
