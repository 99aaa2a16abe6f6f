import { expect } from "chai";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { getServices, type Services } from "../../src/index.ts";
import { CounterService } from "../fixtures/services.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";
import { CLI_ARGS } from "../helpers/cli.ts";

const run = async (...args: string[]) => {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...CLI_ARGS, ...args], { env: { ...process.env, NATS_URL: testUrl() } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
};

describe("actorbus CLI", function () {
  this.timeout(30_000);
  let services: Services;
  let ns: string;
  before(async () => {
    ns = uniqueNamespace();
    services = await getServices({ namespace: ns, servers: testUrl() });
    await services.register("counter", CounterService, 10);
  });
  after(async () => {
    await services.reset();
    await services.close();
  });

  it("call prints a streaming method's items as they come, one JSON line each", async () => {
    await services.register("gen", class {
      async *tokens(prefix: string, n: number) {
        for (let i = 0; i < n; i++) yield { token: `${prefix}${i}` };
      }
    });
    const { code, stdout } = await run("call", "gen", "tokens", '["t", 3]', "--namespace", ns);
    expect(code).to.equal(0);
    expect(stdout.trim().split("\n").map((l) => JSON.parse(l))).to.deep.equal([{ token: "t0" }, { token: "t1" }, { token: "t2" }]);
    await services.remove("gen");
  });

  it("ls shows services with host, calls and errors", async () => {
    const h = await services.get<CounterService>("counter");
    await h.increment();
    const { code, stdout } = await run("ls", "--namespace", ns);
    expect(code).to.equal(0);
    expect(stdout).to.match(/SERVICE\s+CLASS\s+HOST\/PID\s+CALLS\s+ERRORS/);
    expect(stdout).to.match(new RegExp(`counter\\s+CounterService\\s+\\S+/${process.pid}\\s+\\d+\\s+0`));
    const json = JSON.parse((await run("ls", "-n", ns, "--json")).stdout);
    expect(json[0].record.name).to.equal("counter");
  });

  it("call invokes a method with JSON arguments", async () => {
    const { code, stdout } = await run("call", "counter", "increment", "[5]", "--namespace", ns);
    expect(code).to.equal(0);
    expect(Number(stdout)).to.be.greaterThanOrEqual(15);
  });

  it("call of a missing service fails with the typed error", async () => {
    const { code, stderr } = await run("call", "ghost", "x", "-n", ns);
    expect(code).to.equal(1);
    expect(stderr).to.contain("ServiceNotFoundError [SERVICE_NOT_FOUND]").and.contain("counter");
  });

  it("reset requires --namespace and then empties it", async () => {
    // A usage error (the command line itself is wrong) exits 2, like an unknown command.
    expect((await run("reset")).code).to.equal(2);
    const { code, stdout } = await run("reset", "--namespace", ns);
    expect(code).to.equal(0);
    expect(stdout).to.contain("stopped 1 service(s) (counter)");
    expect(await services.list()).to.deep.equal([]);
  });

  it("prints help and rejects unknown commands", async () => {
    expect((await run("--help")).stdout).to.contain("actorbus ls");
    expect((await run("frobnicate")).code).to.equal(2);
  });
});
