import { expect } from "chai";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createHandle, handleInfo } from "../../src/actor/index.ts";
import { defaultHostId, resolveAgentOptions, startAgent } from "../../src/agent/index.ts";
import { connectBus, createLocalBus, localConnection, rateLimitedLogger, startNatsServer } from "../../src/connection/index.ts";
import { InvalidOptionsError, ServiceNotFoundError } from "../../src/errors/index.ts";
import { PythonExecutorService, PythonInterpreter, resolveExecutorOptions } from "../../src/executor/index.ts";
import { resolveExecuteOptions } from "../../src/executor/options.ts";
import { InferenceServer, inferenceClient, InProcessTransport, NatsTransport } from "../../src/inference/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { resolveServiceOptions } from "../../src/service/index.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { CLI_ARGS } from "../helpers/cli.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { CounterService } from "../fixtures/services.ts";

/** Deadlines that must never reach a timer: each would make a call that never (or at once) times out. */
const BAD_DEADLINES: unknown[] = [NaN, -1, Infinity, "5"];
/** Nothing listens here: an entry that got past its options would fail differently (or hang). */
const NOWHERE = "nats://127.0.0.1:1";

/** The InvalidOptionsError of `f`, whether it throws or returns a rejected promise. */
async function invalid(f: () => unknown, what = ""): Promise<InvalidOptionsError> {
  let err: unknown;
  try {
    await f();
  } catch (e) {
    err = e;
  }
  expect(err, `${what}: should have failed`).to.be.instanceOf(InvalidOptionsError);
  return err as InvalidOptionsError;
}

async function expectUnknown(f: () => unknown, key: string, suggestion: string, someValid: string[]): Promise<void> {
  const e = await invalid(f, key);
  expect(e.message).to.contain(`unknown option "${key}"; valid options are `).and.contain(`did you mean "${suggestion}"?`);
  for (const v of someValid) expect(e.message).to.contain(v);
  expect(e.details).to.deep.include({ option: key, suggestion });
}

async function expectBadDeadlines(option: string, f: (bad: unknown) => unknown): Promise<void> {
  for (const bad of BAD_DEADLINES) {
    const e = await invalid(() => f(bad), `${option}: ${String(bad)}`);
    expect(e.message, String(bad)).to.match(new RegExp(`${option.replace(/[.[\]]/g, "\\$&")} must be a number of milliseconds in \\d+\\.\\.2147483647`));
    expect(e.details.option).to.equal(option);
  }
}

describe("options of every public entry", function () {
  this.timeout(30_000);

  describe("getServices", () => {
    it("rejects an unknown key, listing the valid ones (connection options included) with a suggestion", async () => {
      await expectUnknown(() => getServices({ backend: "local", namspace: "x" } as never), "namspace", "namespace", ["backend", "staleAfterMs", "servers", "credsFile"]);
    });

    it("skips undefined values: defaults apply", async () => {
      const services = await getServices({ backend: "local", localBus: createLocalBus(), namespace: undefined, timeoutMs: undefined });
      try {
        expect(services.namespace).to.equal("default");
        expect(handleInfo(services.at("anything"))!.timeoutMs).to.equal(30_000);
      } finally {
        await services.close();
      }
    });

    it("rejects bad deadlines", async () => {
      for (const option of ["timeoutMs", "controlTimeoutMs", "staleAfterMs"]) {
        await expectBadDeadlines(option, (bad) => getServices({ backend: "local", localBus: createLocalBus(), [option]: bad }));
      }
      // Connection deadlines are checked before connecting.
      await expectBadDeadlines("connectTimeoutMs", (bad) => getServices({ servers: NOWHERE, connectTimeoutMs: bad as number }));
    });
  });

  describe("connectBus", () => {
    it("rejects an unknown key with a suggestion, also inside tls", async () => {
      await expectUnknown(() => connectBus({ server: NOWHERE } as never), "server", "servers", ["servers", "credsFile", "inboxPrefix"]);
      const e = await invalid(() => connectBus({ servers: NOWHERE, tls: { cafile: "/ca.pem" } as never }));
      expect(e.message).to.match(/connectBus options: tls: unknown option "cafile".*did you mean "caFile"/);
    });

    it("skips undefined values: defaults apply", async () => {
      const conn = await connectBus({ servers: testUrl(), devServer: undefined, connectTimeoutMs: undefined, name: undefined, maxReconnectAttempts: undefined });
      await conn.close();
    });

    it("rejects bad deadlines before connecting", async () => {
      await expectBadDeadlines("connectTimeoutMs", (bad) => connectBus({ servers: NOWHERE, connectTimeoutMs: bad as number }));
      await expectBadDeadlines("reconnectTimeWaitMs", (bad) => connectBus({ servers: NOWHERE, reconnectTimeWaitMs: bad as number }));
    });
  });

  describe("startAgent", () => {
    it("rejects an unknown key with a suggestion", async () => {
      await expectUnknown(() => startAgent({ hostID: "a", servers: NOWHERE } as never), "hostID", "hostId", ["hostId", "heartbeatMs", "allow", "servers"]);
    });

    it("skips undefined values: defaults apply", () => {
      const o = resolveAgentOptions({ hostId: undefined, heartbeatMs: undefined, gpus: undefined, namespace: undefined });
      expect(o).to.include({ hostId: defaultHostId(), heartbeatMs: 1_000, gpus: 0, namespace: "default" });
      expect(o.allow).to.deep.equal([process.cwd()]);
    });

    it("rejects bad deadlines before connecting", async () => {
      for (const option of ["heartbeatMs", "leaseTimeoutMs", "stopGraceMs"]) {
        await expectBadDeadlines(option, (bad) => startAgent({ servers: NOWHERE, [option]: bad }));
      }
    });
  });

  describe("actor options (registerWithOptions, serve)", () => {
    let services: Services;
    before(async () => {
      services = await getServices({ backend: "local", localBus: createLocalBus(), namespace: uniqueNamespace() });
    });
    after(() => services.close());

    it("rejects an unknown key with a suggestion and says where constructor arguments go", async () => {
      await expectUnknown(() => services.registerWithOptions("c", CounterService, { maxConcurency: 2 } as never), "maxConcurency", "maxConcurrency", ["maxPending", "timeoutMs"]);
      const e = await invalid(() => services.serve("c", CounterService, { start: 1 } as never));
      expect(e.message).to.contain("constructor arguments go after the options object");
    });

    it("skips undefined values: defaults apply", async () => {
      const h = await services.registerWithOptions("c", CounterService, { timeoutMs: undefined, maxConcurrency: undefined }, 5);
      expect(handleInfo(h)!.timeoutMs).to.equal(30_000);
      expect((await services.describe("c"))!.options.maxConcurrency).to.equal(1);
      expect(await h.increment()).to.equal(6);
    });

    it("rejects bad deadlines", async () => {
      await expectBadDeadlines("timeoutMs", (bad) => services.registerWithOptions("d", CounterService, { timeoutMs: bad as number }));
      await expectBadDeadlines("drainTimeoutMs", (bad) => services.registerWithOptions("d", CounterService, { drainTimeoutMs: bad as number }));
      expect(await services.has("d")).to.equal(false);
    });
  });

  describe("service options (Actor.options, asService)", () => {
    it("rejects an unknown key with a suggestion", async () => {
      await expectUnknown(() => Counter.options({ numReplica: 2 } as never), "numReplica", "numReplicas", ["procs", "routing", "namespace"]);
    });

    it("skips undefined values: defaults apply", () => {
      expect(resolveServiceOptions({ timeoutMs: undefined, routing: undefined, hosts: undefined })).to.include({ timeoutMs: 30_000, routing: "least-loaded", hosts: null });
      expect(Counter.options({ numReplicas: 3 }).options({ numReplicas: undefined }).numReplicas).to.equal(1);
    });

    it("rejects bad deadlines, eagerly in options()", async () => {
      for (const option of ["timeoutMs", "startTimeoutMs", "healthIntervalMs", "restartBackoffMs"]) {
        await expectBadDeadlines(option, (bad) => Counter.options({ [option]: bad }));
      }
    });
  });

  describe("PythonExecutorService and its execute options", () => {
    const resolved = resolveExecutorOptions({});

    it("rejects an unknown key with a suggestion (constructor, sandbox, execute)", async () => {
      await expectUnknown(() => new PythonExecutorService({ pool_size: 4 } as never), "pool_size", "poolSize", ["timeoutMs", "sandbox"]);
      await expectUnknown(() => new PythonExecutorService({ sandbox: { nework: true } } as never), "nework", "network", ["memoryBytes"]);
      await expectUnknown(() => resolveExecuteOptions({ session: "s" } as never, resolved), "session", "sessionId", ["timeoutMs"]);
    });

    it("skips undefined values: defaults apply", () => {
      const r = resolveExecutorOptions({ timeoutMs: undefined, sandbox: undefined, python: undefined });
      expect(r).to.include({ timeoutMs: 10_000, python: "python3", pythonExplicit: false });
      expect(r.sandbox.enabled).to.equal(true);
      expect(resolveExecuteOptions({ timeoutMs: undefined, sessionId: undefined }, resolved)).to.deep.equal({ sessionId: undefined, timeoutMs: 10_000, signal: undefined });
    });

    it("rejects bad deadlines (constructor: before any interpreter starts; execute: per call)", async () => {
      for (const option of ["timeoutMs", "maxQueueWaitMs", "startTimeoutMs"]) {
        await expectBadDeadlines(option, (bad) => new PythonExecutorService({ [option]: bad }));
      }
      await expectBadDeadlines("timeoutMs", (bad) => resolveExecuteOptions({ timeoutMs: bad as number }, resolved));
    });
  });

  describe("PythonInterpreter", () => {
    it("rejects an unknown key with a suggestion, also in connect", async () => {
      await expectUnknown(() => new PythonInterpreter({ service_name: "x" } as never), "service_name", "serviceName", ["callTimeoutMs", "persistent"]);
      await expectUnknown(() => new PythonInterpreter({ services: "local", connect: { staleAfter: 5 } as never }), "staleAfter", "staleAfterMs", ["timeoutMs"]);
      const tool = new PythonInterpreter();
      try {
        await expectUnknown(() => tool.run("no code here", { session: "s" } as never), "session", "sessionId", ["sessionId"]);
      } finally {
        await tool.close();
      }
    });

    it("skips undefined values: defaults apply", async () => {
      const tool = new PythonInterpreter({ services: undefined, persistent: undefined, timeoutMs: undefined, serviceName: undefined });
      try {
        expect(tool.mode).to.equal("temporary");
        expect(tool.serviceName).to.equal("python_executor");
        expect(tool.persistent).to.equal(false);
      } finally {
        await tool.close();
      }
    });

    it("rejects bad deadlines", async () => {
      await expectBadDeadlines("timeoutMs", (bad) => new PythonInterpreter({ timeoutMs: bad as number }));
      await expectBadDeadlines("callTimeoutMs", (bad) => new PythonInterpreter({ services: "local", callTimeoutMs: bad as number }));
    });
  });

  describe("inference", () => {
    const model = async (xs: unknown) => xs;
    const conn = localConnection(createLocalBus());

    it("rejects an unknown key with a suggestion (transports, server, submit, shutdown, inferenceClient)", async () => {
      await expectUnknown(() => new InProcessTransport({ timeout: 5 } as never), "timeout", "timeoutMs", ["maxBuffered"]);
      await expectUnknown(() => new NatsTransport({ connection: conn, namespace: "n", name: "p", lease: 50 } as never), "lease", "leaseMs", ["connection", "logger"]);
      await expectUnknown(() => new InferenceServer(model, new InProcessTransport(), { maxBatch: 4 } as never), "maxBatch", "maxBatchSize", ["collate", "split"]);
      await expectUnknown(() => new InProcessTransport().submit(1, { timeout: 5 } as never), "timeout", "timeoutMs", ["timeoutMs"]);
      await expectUnknown(() => new InferenceServer(model, new InProcessTransport()).shutdown({ timeout: 5 } as never), "timeout", "timeoutMs", ["timeoutMs"]);
      const services = await getServices({ backend: "local", localBus: createLocalBus() });
      try {
        await expectUnknown(() => inferenceClient(services, "policy", { lease: 50 } as never), "lease", "leaseMs", ["timeoutMs"]);
      } finally {
        await services.close();
      }
    });

    it("skips undefined values: defaults apply", async () => {
      const t = new InProcessTransport({ timeoutMs: undefined, maxBuffered: undefined });
      expect((t as unknown as { timeoutMs: number }).timeoutMs).to.equal(30_000);
      // collate undefined: the default stacks tensor records into one array per key.
      const doubleFirst = async (batch: { data: { x: Float32Array } }) => [batch.data.x[0]! * 2];
      const server = new InferenceServer(doubleFirst, t, { maxBatchSize: undefined, timeoutMs: undefined, collate: undefined }).start();
      expect([server.maxBatchSize, server.timeoutMs]).to.deep.equal([64, 10]);
      expect(await t.submit({ x: new Float32Array([3]) }, { timeoutMs: undefined })).to.equal(6);
      await server.shutdown({ timeoutMs: undefined });
      const n = new NatsTransport({ connection: conn, namespace: "n", name: "p", leaseMs: undefined });
      expect((n as unknown as { leaseMs: number }).leaseMs).to.equal(1_000);
      await n.close();
    });

    it("rejects bad deadlines: constructors throw, per-call and shutdown options reject", async () => {
      await expectBadDeadlines("timeoutMs", (bad) => new InProcessTransport({ timeoutMs: bad as number }));
      await expectBadDeadlines("leaseMs", (bad) => new NatsTransport({ connection: conn, namespace: "n", name: "p", leaseMs: bad as number }));
      await expectBadDeadlines("timeoutMs", (bad) => new NatsTransport({ connection: conn, namespace: "n", name: "p", timeoutMs: bad as number }));
      await expectBadDeadlines("shutdownTimeoutMs", (bad) => new InferenceServer(model, new InProcessTransport(), { shutdownTimeoutMs: bad as number }));
      const t = new InProcessTransport();
      for (const bad of BAD_DEADLINES) {
        // A promise-returning call rejects rather than throws.
        const p = t.submit(1, { timeoutMs: bad as number });
        expect(p).to.be.instanceOf(Promise);
        expect(await p.catch((e: unknown) => e)).to.be.instanceOf(InvalidOptionsError);
      }
      const n = new NatsTransport({ connection: conn, namespace: "n", name: "p" });
      await expectBadDeadlines("timeoutMs", (bad) => n.submit(1, { timeoutMs: bad as number }));
      await n.close();
      await expectBadDeadlines("timeoutMs", (bad) => new InferenceServer(model, new InProcessTransport()).shutdown({ timeoutMs: bad as number }));
      const services = await getServices({ backend: "local", localBus: createLocalBus() });
      try {
        // Checked before the lookup: not ServiceNotFoundError for the missing "policy".
        await expectBadDeadlines("timeoutMs", (bad) => inferenceClient(services, "policy", { timeoutMs: bad as number }));
      } finally {
        await services.close();
      }
    });
  });

  describe("handle options (get, at, getClient)", () => {
    let services: Services;
    before(async () => {
      services = await getServices({ backend: "local", localBus: createLocalBus(), namespace: uniqueNamespace() });
      await services.registerWithOptions("counter", CounterService, { timeoutMs: 7_000 });
    });
    after(() => services.close());

    it("rejects an unknown key with a suggestion", async () => {
      await expectUnknown(() => services.get("counter", { timeout: 5 } as never), "timeout", "timeoutMs", ["timeoutMs"]);
      await expectUnknown(() => services.at("counter", { timeout: 5 } as never), "timeout", "timeoutMs", ["timeoutMs"]);
    });

    it("watch() rejects an unknown key with a suggestion, and skips undefined values", async () => {
      await expectUnknown(() => services.watch({ includeExisitng: true } as never), "includeExisitng", "includeExisting", ["includeExisting"]);
      const w = services.watch({ includeExisting: undefined });
      await w.close();
    });

    it("skips undefined values: the service's deadline applies", async () => {
      expect(handleInfo(await services.get("counter", { timeoutMs: undefined }))!.timeoutMs).to.equal(7_000);
      expect(handleInfo(services.at("counter", { timeoutMs: undefined }))!.timeoutMs).to.equal(30_000);
    });

    it("rejects bad deadlines before looking the service up", async () => {
      // "ghost" is not registered: a deadline checked after the lookup would give ServiceNotFoundError.
      await expectBadDeadlines("timeoutMs", (bad) => services.get("ghost", { timeoutMs: bad as number }));
      await expectBadDeadlines("timeoutMs", (bad) => services.at("ghost", { timeoutMs: bad as number }));
      if (typeof (services as { getClient?: unknown }).getClient === "function") {
        await expectBadDeadlines("timeoutMs", (bad) => services.getClient("ghost", { timeoutMs: bad as number }));
      }
      expect(await services.get("ghost").catch((e) => e)).to.be.instanceOf(ServiceNotFoundError);
    });

    it('services.get("x", { timeoutMs: NaN }) on NATS rejects at once, before any request', async () => {
      const nats = await getServices({ servers: testUrl(), namespace: uniqueNamespace() });
      try {
        const t0 = performance.now();
        const e = await invalid(() => nats.get("x", { timeoutMs: NaN }));
        expect(performance.now() - t0).to.be.lessThan(50);
        expect(e.message).to.match(/^get\("x"\) options: timeoutMs must be a number of milliseconds in 1\.\.2147483647 \(got NaN\); NaN would never time out/);
      } finally {
        await nats.close();
      }
    });

    it("every handle's deadline is checked, whatever its source (e.g. a registry record)", () => {
      const conn = localConnection(createLocalBus());
      for (const bad of [NaN, 0, Infinity, 2 ** 31]) {
        expect(() => createHandle({ conn, subjects: subjectsFor("n"), name: "x", timeoutMs: bad }), String(bad)).to.throw(InvalidOptionsError, /handle of "x": timeoutMs must be/);
      }
    });
  });

  describe("startNatsServer", () => {
    it("rejects an unknown key and a bad startTimeoutMs before spawning anything", async () => {
      await expectUnknown(() => startNatsServer({ jetStream: false } as never), "jetStream", "jetstream", ["port", "config"]);
      await expectBadDeadlines("startTimeoutMs", (bad) => startNatsServer({ startTimeoutMs: bad as number }));
    });

    it("skips undefined values: defaults apply", async () => {
      const server = await startNatsServer({ port: undefined, jetstream: undefined, startTimeoutMs: undefined });
      await server.stop();
    });
  });

  describe("rateLimitedLogger", () => {
    const sink = { warn: () => {} };

    it("rejects an unknown key with a suggestion, and a sink without warn()", async () => {
      await expectUnknown(() => rateLimitedLogger(sink, { interval: 5 } as never), "interval", "intervalMs", ["maxLines", "now"]);
      expect(() => rateLimitedLogger({} as never)).to.throw(InvalidOptionsError, /sink must be an object with warn\(\)/);
    });

    it("skips undefined values: defaults apply", () => {
      const lines: string[] = [];
      const log = rateLimitedLogger({ warn: (e) => void lines.push(e) }, { maxLines: undefined, intervalMs: undefined, now: () => 0 });
      for (let i = 0; i < 20; i++) log.warn(`e${i}`);
      expect(lines).to.have.length(10);
      log.flush();
    });

    it("rejects bad durations", async () => {
      await expectBadDeadlines("intervalMs", (bad) => rateLimitedLogger(sink, { intervalMs: bad as number }));
    });
  });

  describe("CLI numeric flags", () => {
    const cli = async (...args: string[]) => {
      try {
        const { stdout, stderr } = await promisify(execFile)(process.execPath, [...CLI_ARGS, ...args], { env: { ...process.env, NATS_URL: NOWHERE } });
        return { code: 0, stdout, stderr };
      } catch (err) {
        const e = err as { code: number; stdout: string; stderr: string };
        return { code: e.code, stdout: e.stdout, stderr: e.stderr };
      }
    };

    it("--timeout abc and --timeout-ms abc are usage errors (exit 2) that name the fix, before connecting", async () => {
      const [unknown, abc, negative, huge, heartbeat] = await Promise.all([
        cli("call", "svc", "m", "--timeout", "abc"),
        cli("call", "svc", "m", "--timeout-ms", "abc"),
        cli("call", "svc", "m", "--timeout-ms=-1"),
        cli("call", "svc", "m", "--timeout-ms", "1e12"),
        cli("agent", "--heartbeat-ms", "10"),
      ]);
      expect(unknown.code).to.equal(2);
      expect(unknown.stderr).to.contain("UsageError [INVALID_OPTIONS]: unknown option --timeout; did you mean --timeout-ms?");
      expect(abc.code).to.equal(2);
      expect(abc.stderr).to.contain('actorbus call: --timeout-ms must be a number of milliseconds in 1..2147483647 (got "abc")');
      expect(negative.code).to.equal(2);
      expect(negative.stderr).to.contain("--timeout-ms must be a number of milliseconds in 1..2147483647 (got -1)");
      expect(huge.code).to.equal(2);
      expect(huge.stderr).to.contain("(got 1000000000000); timers cannot wait longer");
      expect(heartbeat.code).to.equal(2);
      expect(heartbeat.stderr).to.contain("actorbus agent: --heartbeat-ms must be a number of milliseconds in 50..2147483647 (got 10)");
      // None of them got as far as connecting to NOWHERE.
      for (const r of [unknown, abc, negative, huge, heartbeat]) expect(r.stderr).to.not.contain("NoServerError");
    });
  });
});
