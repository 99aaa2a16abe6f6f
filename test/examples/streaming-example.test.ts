import { expect } from "chai";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";

const EXAMPLE = fileURLToPath(new URL("../../examples/streaming/main.ts", import.meta.url));

describe("examples/streaming/main.ts", function () {
  this.timeout(60_000);
  it("streams, breaks, cancels and bounds a stream on a replicated service", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", EXAMPLE], {
      env: { ...process.env, NATS_URL: testUrl(), ACTORBUS_EXAMPLE_NAMESPACE: uniqueNamespace("streamex") },
    });
    expect(stdout).to.contain("full stream: ada:hello#0 ada:hello#1 ada:hello#2 ada:hello#3 ada:hello#4");
    expect(stdout).to.contain("break after 3 tokens");
    expect(stdout).to.contain("cancelled after 5 tokens: true");
    expect(stdout).to.contain("deadline: true");
    expect(stdout).to.contain("generators closed on the replicas: 4");
  });
});
