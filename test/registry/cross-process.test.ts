import { expect } from "chai";
import { getServices, ServiceNotFoundError, type Services } from "../../src/index.ts";
import { CounterService, TokenizerService } from "../fixtures/services.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { isRunning, killAllWorkers, startWorker } from "../helpers/processes.ts";

describe("registry across OS processes (nats)", function () {
  this.timeout(60_000);
  let ns: string;
  let services: Services;
  beforeEach(async () => {
    ns = uniqueNamespace();
    services = await getServices({ namespace: ns, servers: testUrl() });
  });
  afterEach(async () => {
    await killAllWorkers();
    await services.reset();
    await services.close();
  });

  it("a service registered by one process is used by others", async () => {
    const host = startWorker("host-tokenizer", { url: testUrl(), namespace: ns });
    expect((await host.next()).ready).to.equal(true);
    const tok = await services.get<TokenizerService>("tokenizer");
    expect(await tok.encode("Hi")).to.deep.equal([72, 105]);
    const user = startWorker("use-tokenizer", { url: testUrl(), namespace: ns });
    const seen = await user.next();
    expect(seen).to.deep.equal({ ids: [72, 101, 108, 108, 111], has: true, list: ["tokenizer"] });
    await user.exited;
    await host.stop();
    expect(await services.has("tokenizer")).to.equal(false); // graceful exit deregistered it
  });

  it("exactly one of 10 concurrent registrations from 5 processes wins", async () => {
    const workers = Array.from({ length: 5 }, () => startWorker("race", { url: testUrl(), namespace: ns, name: "contested" }));
    const outcomes = (await Promise.all(workers.map((w) => w.next<{ results: string[] }>(30_000)))).flatMap((o) => o.results);
    expect(outcomes).to.have.length(10);
    expect(outcomes.filter((r) => r === "won")).to.have.length(1);
    expect(outcomes.filter((r) => r === "ServiceExistsError")).to.have.length(9);
    const c = await services.get<CounterService>("contested");
    expect(await c.increment()).to.equal(1);
  });

  it("get() of a service whose host died cleans the stale entry and raises ServiceNotFoundError", async () => {
    const host = startWorker("host-tokenizer", { url: testUrl(), namespace: ns });
    const { pid } = await host.next();
    host.child.kill("SIGKILL");
    await host.exited;
    expect(isRunning(pid)).to.equal(false);
    expect(await services.describe("tokenizer")).to.not.equal(undefined); // the entry outlived its host
    const err = await services.get("tokenizer").catch((e) => e);
    expect(err).to.be.instanceOf(ServiceNotFoundError);
    expect(await services.describe("tokenizer")).to.equal(undefined);
    // and the name can be taken again
    await services.register("tokenizer", TokenizerService, { vocabSize: 10 });
  });

  it("register() replaces a stale entry left by a crashed host", async () => {
    const host = startWorker("host-tokenizer", { url: testUrl(), namespace: ns });
    await host.next();
    host.child.kill("SIGKILL");
    await host.exited;
    const h = await services.register("tokenizer", TokenizerService, { vocabSize: 3 });
    expect(await h.vocabSize()).to.equal(3);
  });

  it("hosts in several processes share one service through the queue group", async () => {
    const workers = [startWorker("host-pid", { url: testUrl(), namespace: ns }), startWorker("host-pid", { url: testUrl(), namespace: ns })];
    const pids = new Set((await Promise.all(workers.map((w) => w.next()))).map((r) => r.pid));
    const h = await services.get<{ pid(): number }>("pid");
    const seen = new Set<number>();
    await until(async () => (seen.add(await h.pid()), seen.size === 2), 10_000, "both hosts to answer");
    expect(seen).to.deep.equal(pids);
    // reset() reaches hosts in other processes and stops them
    await services.reset();
    expect(await services.list()).to.deep.equal([]);
    await workers[0]!.stop();
    await workers[1]!.stop();
  });
});
