import { expect } from "chai";
import { resolveAgentOptions, startAgent, type Agent } from "../../src/agent/index.ts";
import { agentCommand } from "../../src/cli/agent.ts";
import { UsageError } from "../../src/cli/args.ts";
import { InvalidOptionsError, PlacementError } from "../../src/errors/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { liveAgents } from "../../src/service/index.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";
import { replicaPids, startAgentProcess, stopAllAgents } from "../helpers/replicas.ts";
import { Counter } from "../fixtures/replicas/counter.ts";

const quiet = { stdout: { write: () => true }, stderr: process.stderr } as unknown as { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };
const NOWHERE = "nats://127.0.0.1:1";

describe("agent GPUs: which devices an agent offers", () => {
  const ids = (gpus: unknown, env: NodeJS.ProcessEnv = {}) => resolveAgentOptions({ gpus: gpus as never }, env).gpuIds;

  it("takes a count, an id array or an id list string; a bare numeral string is a count", () => {
    expect(ids(3)).to.deep.equal([0, 1, 2]);
    expect(ids("3")).to.deep.equal([0, 1, 2]);
    expect(ids([0, 2, 5, 7])).to.deep.equal([0, 2, 5, 7]);
    expect(ids("0,2,5,7")).to.deep.equal([0, 2, 5, 7]);
    expect(ids(" 7, 5 ,2 ")).to.deep.equal([7, 5, 2]);
    expect(ids("3,")).to.deep.equal([3]);
    expect(ids([3])).to.deep.equal([3]);
    expect(ids(0)).to.deep.equal([]);
    expect(ids([])).to.deep.equal([]);
    expect(resolveAgentOptions({ gpus: "0,2,5,7" }, {}).gpus).to.equal(4);
  });

  it("absent gpus: the agent's own CUDA_VISIBLE_DEVICES, read as CUDA reads it; a count takes the first n of it", () => {
    expect(ids(undefined, {})).to.deep.equal([]);
    expect(ids(undefined, { CUDA_VISIBLE_DEVICES: "0,2,5,7" })).to.deep.equal([0, 2, 5, 7]);
    expect(ids(undefined, { CUDA_VISIBLE_DEVICES: "" })).to.deep.equal([]);
    expect(ids(undefined, { CUDA_VISIBLE_DEVICES: "-1" })).to.deep.equal([]);
    expect(ids(undefined, { CUDA_VISIBLE_DEVICES: "4,6,-1,7" })).to.deep.equal([4, 6]);
    expect(ids(undefined, { CUDA_VISIBLE_DEVICES: "3,1,4,1" })).to.deep.equal([3, 1, 4]);
    expect(ids(2, { CUDA_VISIBLE_DEVICES: "5,7,9" })).to.deep.equal([5, 7]);
    // An explicit list wins over the environment.
    expect(ids("1,3", { CUDA_VISIBLE_DEVICES: "5,7,9" })).to.deep.equal([1, 3]);
    expect(ids(0, { CUDA_VISIBLE_DEVICES: "5,7,9" })).to.deep.equal([]);
  });

  it("rejects bad lists and counts, naming the fix, before connecting", async () => {
    for (const [gpus, why] of [
      ["0,0", /device 0 is listed twice/],
      [[2, 2], /device 2 is listed twice/],
      ["0,a", /"a" is not a device id/],
      ["0,,1", /"" is not a device id/],
      ["0,-1", /"-1" is not a device id/],
      [[1.5], /1.5 is not a device id/],
      [[-1], /-1 is not a device id/],
      [["1"], /"1" is not a device id/],
      ["GPU-8f2e,GPU-1a2b", /device UUIDs are not supported; pass the numeric ids/],
      ["", /gpus must be a count such as 4, or device ids such as "0,2,5,7"/],
      ["two", /gpus must be a count/],
      [-1, /gpus must be an integer >= 0 and <= 1024/],
      [2.5, /gpus must be an integer >= 0/],
      [NaN, /gpus must be an integer >= 0/],
      ["5000", /gpus must be an integer >= 0 and <= 1024/],
      [{ ids: [0] }, /gpus must be a count/],
    ] as const) {
      try {
        await startAgent({ servers: NOWHERE, gpus: gpus as never });
        expect.fail(`should have rejected ${JSON.stringify(gpus)}`);
      } catch (err) {
        expect(err, JSON.stringify(gpus)).to.be.instanceOf(InvalidOptionsError);
        expect((err as Error).message, JSON.stringify(gpus)).to.match(/^agent options: gpus must be/).and.match(why);
      }
    }
    expect(() => ids(undefined, { CUDA_VISIBLE_DEVICES: "GPU-8f2e-aaaa" })).to.throw(InvalidOptionsError, /CUDA_VISIBLE_DEVICES \("GPU-8f2e-aaaa"\) lists "GPU-8f2e-aaaa", not a numeric device id.*--gpus 0,2.*--gpus 0 for none/);
    // Passing gpus is the way around an environment the agent cannot read.
    expect(ids("0,1", { CUDA_VISIBLE_DEVICES: "GPU-8f2e-aaaa" })).to.deep.equal([0, 1]);
    expect(() => ids(4, { CUDA_VISIBLE_DEVICES: "0,2" })).to.throw(InvalidOptionsError, /gpus is 4, but this process's CUDA_VISIBLE_DEVICES exposes 2 device\(s\) \(0,2\); offer at most 2, or name the devices: --gpus 0,2/);
  });

  it("actorbus agent --gpus: a bad list is a usage error naming the flag", async () => {
    for (const bad of ["0,x", "1,1", "GPU-1,GPU-2", "-2"]) {
      try {
        await agentCommand(["--servers", NOWHERE, `--gpus=${bad}`]);
        expect.fail("should have thrown");
      } catch (err) {
        expect(err).to.be.instanceOf(UsageError);
        expect((err as Error).message).to.match(/actorbus agent: --gpus must be/);
      }
    }
  });
});

describe("agent GPUs: replicas get the device ids they were allocated", function () {
  this.timeout(90_000);
  const ns = uniqueNamespace("gpu");
  const agents: Agent[] = [];
  let services: Services;

  before(async () => {
    services = await getServices({ namespace: ns, servers: testUrl() });
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.stop()));
  });
  after(async () => {
    await services?.close();
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  const gpusOf = async (svc: { whoami: { fanout(): Promise<{ gpus: string | undefined }[]> } }) => (await svc.whoami.fanout()).map((w) => w.gpus);
  const used = async () => (await liveAgents(services.connection, subjectsFor(ns))).map((h) => [h.gpus, h.usedGpus]);

  it("a non-contiguous list: exactly the offered ids, in order; released ids are handed out again", async () => {
    const agent = await startAgent({ servers: testUrl(), namespace: ns, hostId: "gpus-5-2-7", output: quiet, cpus: 8, gpus: "5,2,7" });
    agents.push(agent);
    expect(agent.gpuIds).to.deep.equal([5, 2, 7]);
    expect(agent.record()).to.include({ gpus: 3 });

    const x = await Counter.options({ withGpus: true, numReplicas: 2, services, meshName: "x" }).asService();
    const y = await Counter.options({ withGpus: true, services, meshName: "y" }).asService();
    try {
      expect((await gpusOf(x)).sort()).to.deep.equal(["2", "5"]);
      expect(await gpusOf(y)).to.deep.equal(["7"]);
      expect(agent.record().usedGpus).to.deep.equal([2, 5, 7]);
      expect(agent.processes().map((p) => p.gpus).sort()).to.deep.equal([[2], [5], [7]]);
      try {
        await Counter.options({ withGpus: true, services, meshName: "z" }).asService();
        expect.fail("should have thrown");
      } catch (err) {
        expect(err).to.be.instanceOf(PlacementError);
        expect((err as Error).message).to.match(/0 free/);
      }

      await x.shutdown();
      expect(agent.record().usedGpus).to.deep.equal([7]);
      expect(await used()).to.deep.equal([[3, [7]]]);
      const z = await Counter.options({ withGpus: true, numReplicas: 2, services, meshName: "z2" }).asService();
      try {
        expect((await gpusOf(z)).sort()).to.deep.equal(["2", "5"]);
        expect(agent.record().usedGpus).to.deep.equal([2, 5, 7]);
      } finally {
        await z.shutdown();
      }
    } finally {
      await x.shutdown();
      await y.shutdown();
    }
    expect(agent.record().usedGpus).to.deep.equal([]);
  });

  it("absent gpus: an in-process agent offers its own CUDA_VISIBLE_DEVICES; a replica gets one of those ids", async () => {
    const saved = process.env.CUDA_VISIBLE_DEVICES;
    process.env.CUDA_VISIBLE_DEVICES = "6,3";
    let started: Promise<Agent>;
    try {
      // The environment is read when startAgent is called, before its first await.
      started = startAgent({ servers: testUrl(), namespace: ns, hostId: "gpus-env", output: quiet, cpus: 4 });
    } finally {
      if (saved === undefined) delete process.env.CUDA_VISIBLE_DEVICES;
      else process.env.CUDA_VISIBLE_DEVICES = saved;
    }
    const agent = await started;
    agents.push(agent);
    expect(agent.gpuIds).to.deep.equal([6, 3]);
    const svc = await Counter.options({ withGpus: true, services, meshName: "env" }).asService();
    try {
      expect(await gpusOf(svc)).to.deep.equal(["6"]);
      expect(agent.record().usedGpus).to.deep.equal([6]);
    } finally {
      await svc.shutdown();
    }
  });
});

describe("agent GPUs: actorbus agent processes", function () {
  this.timeout(90_000);
  const ns = uniqueNamespace("gpucli");
  let services: Services;

  before(async () => {
    services = await getServices({ namespace: ns, servers: testUrl() });
  });
  after(async () => {
    await services?.close();
    await stopAllAgents();
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  it("an agent process started with CUDA_VISIBLE_DEVICES=4,1 and no --gpus offers 4 and 1; --gpus overrides it", async () => {
    const fromEnv = await startAgentProcess(testUrl(), ns, "host-env", ["--cpus", "2"], { CUDA_VISIBLE_DEVICES: "4,1" });
    const fromFlag = await startAgentProcess(testUrl(), ns, "host-flag", ["--cpus", "2", "--gpus", "0,2,5,7"], { CUDA_VISIBLE_DEVICES: "4,1" });
    expect(fromEnv.output.join("\n")).to.match(/agent host-env ready: .*2 GPUs \(4,1\)/);
    expect(fromFlag.output.join("\n")).to.match(/agent host-flag ready: .*4 GPUs \(0,2,5,7\)/);
    const hosts = await liveAgents(services.connection, subjectsFor(ns));
    expect(hosts.map((h) => [h.hostId, h.gpus])).to.deep.equal([["host-env", 2], ["host-flag", 4]]);

    const svc = await Counter.options({ withGpus: true, numReplicas: 4, services }).asService();
    try {
      const who = await svc.whoami.fanout();
      const byHost = (h: string) => who.filter((w) => w.host === h).map((w) => w.gpus).sort();
      // Placement spreads by free GPUs; whichever lands where, each gets one of its host's ids.
      for (const g of byHost("host-env")) expect(["4", "1"]).to.include(g);
      for (const g of byHost("host-flag")) expect(["0", "2", "5", "7"]).to.include(g);
      expect(new Set(who.map((w) => `${w.host}:${w.gpus}`)).size).to.equal(4);
    } finally {
      await svc.shutdown();
    }
  });
});
