import { expect } from "chai";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { testUrl } from "../helpers/nats.ts";

const EXAMPLE = fileURLToPath(new URL("../../examples/inference/batched-policy.ts", import.meta.url));

describe("examples/inference/batched-policy.ts", function () {
  this.timeout(30_000);
  let child: ReturnType<typeof spawn> | undefined;
  afterEach(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });

  it("runs to completion: every actor's steps served, in batches", async () => {
    child = spawn(process.execPath, ["--import", "tsx", EXAMPLE], { env: { ...process.env, NATS_URL: testUrl() }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d));
    child.stderr!.on("data", (d: Buffer) => (stderr += d));
    const code = await new Promise<number | null>((r) => child!.once("exit", r));
    expect(code, stderr).to.equal(0);
    expect(stdout.match(/^actor \d: 320 steps/gm)).to.have.length(3);
    const m = /served (\d+) requests in (\d+) model calls: mean batch size ([\d.]+)/.exec(stdout);
    expect(m, stdout).to.not.equal(null);
    expect(Number(m![1])).to.equal(960);
    expect(Number(m![3])).to.be.above(1);
  });
});
