import { execFileSync, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { expect } from "chai";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";
import { replicaPids } from "../helpers/replicas.ts";

const EXAMPLE = fileURLToPath(new URL("../../examples/replicas/main.ts", import.meta.url));

describe("examples/replicas/main.ts", function () {
  this.timeout(90_000);

  it("runs 3 replicas on 3 agents, survives a killed replica, and leaves nothing running", async () => {
    const ns = uniqueNamespace("exr");
    const child = spawn(process.execPath, ["--import", "tsx", EXAMPLE], {
      env: { ...process.env, NATS_URL: testUrl(), ACTORBUS_NAMESPACE: ns },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (out += d));
    const code = await new Promise<number | null>((r) => child.once("exit", r));
    expect(code, out).to.equal(0);
    const placement = /placement: (.*)/.exec(out)?.[1] ?? "";
    expect(placement.match(/host-\d/g)?.sort(), out).to.deep.equal(["host-1", "host-2", "host-3"]);
    expect(out).to.match(/30 routed calls, per replica: 10 \/ 10 \/ 10/);
    expect(out).to.match(/session \(sticky, one replica\): (\d+) -> (\d+)/);
    expect(out).to.match(/^counter\s+0\s+host-\d/m);
    expect(out).to.match(/calls under a crash: 60 ok, 0 failed/);
    expect(out).to.match(/replica 1 restarted on host-\d in \d+ ms/);
    expect(out.trimEnd()).to.match(/done$/);
    expect(replicaPids(ns)).to.deep.equal([]);
    const agents = execFileSync("ps", ["-eo", "args="], { encoding: "utf8" }).split("\n").filter((l) => l.includes("agent/main.ts") && l.includes(ns));
    expect(agents).to.deep.equal([]);
  });
});
