import { expect } from "chai";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { freePort } from "../../src/connection/index.ts";

const EXAMPLE = fileURLToPath(new URL("../../examples/services/distributed-services.ts", import.meta.url));

describe("npm start (examples/services/distributed-services.ts) without a NATS server", function () {
  this.timeout(30_000);
  it("prints one line that says what to do, and exits non-zero", async () => {
    const url = `nats://127.0.0.1:${await freePort()}`;
    const err = await promisify(execFile)(process.execPath, ["--import", "tsx", EXAMPLE], {
      env: { ...process.env, NATS_URL: url },
      timeout: 20_000,
    }).then(
      () => undefined,
      (e: { code: number | null; stdout: string; stderr: string }) => e,
    );
    expect(err, "the example should fail").to.not.equal(undefined);
    expect(err!.code).to.equal(1);
    expect(err!.stdout).to.equal("");
    const lines = err!.stderr.trimEnd().split("\n");
    expect(lines, err!.stderr).to.have.length(1);
    expect(lines[0]).to.match(/^actorbus example: cannot reach a NATS server at nats:\/\/127\.0\.0\.1:\d+/);
    expect(lines[0]).to.contain(url).and.contain("unset NATS_URL");
  });
});
