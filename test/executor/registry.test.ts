import { expect } from "chai";
import { InvalidOptionsError, ServiceNotFoundError } from "../../src/errors/index.ts";
import { InterpreterStartError, PythonExecutorService, PythonInterpreter } from "../../src/executor/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { isRunning } from "./helpers.ts";

for (const backend of ["nats", "local"] as const) {
  describe(`PythonExecutorService in the registry (${backend} backend)`, function () {
    this.timeout(30_000);
    let ns: string;
    let services: Services;
    const interpreters: PythonInterpreter[] = [];
    const connect = () => getServices({ backend, namespace: ns, ...(backend === "nats" ? { servers: testUrl() } : {}) });
    const interp = (o: ConstructorParameters<typeof PythonInterpreter>[0] = {}) => {
      const i = new PythonInterpreter({ services: backend, namespace: ns, ...(backend === "nats" ? { servers: testUrl() } : {}), ...o });
      interpreters.push(i);
      return i;
    };

    beforeEach(async () => {
      ns = uniqueNamespace("py");
      services = await connect();
    });
    afterEach(async () => {
      await Promise.all(interpreters.splice(0).map((i) => i.close()));
      await services.reset();
      await services.close();
    });

    it("registers and is found by name", async () => {
      await services.registerWithOptions("python_executor", PythonExecutorService, { maxConcurrency: 2 }, { poolSize: 2, timeoutMs: 5_000 });
      expect(await services.has("python_executor")).to.equal(true);
      expect(await services.list()).to.deep.equal(["python_executor"]);
      const ex = await services.get<PythonExecutorService>("python_executor");
      expect(ex).to.not.equal(undefined);
    });

    it("executes code, reports errors, and keeps sessions apart through handles", async () => {
      await services.registerWithOptions("python_executor", PythonExecutorService, { maxConcurrency: 8 }, { poolSize: 2, timeoutMs: 5_000 });
      // a second registry client, as another worker would have
      const other = await connect();
      try {
        const ex = await other.get<PythonExecutorService>("python_executor");
        const r = await ex.execute("x = 10\ny = 20\nresult = x + y\nprint(f\"Result: {result}\")");
        expect(r.success).to.equal(true);
        expect(r.stdout).to.contain("Result: 30");
        expect(r.returncode).to.equal(0);
        // An options argument left undefined crosses the wire as null: still "no options".
        expect((await ex.execute("print(1)", undefined)).stdout).to.equal("1\n");
        const e = await ex.execute("raise ValueError('Test error')");
        expect(e.success).to.equal(false);
        expect(e.stderr).to.contain("ValueError: Test error");
        await ex.execute("a = 1", { sessionId: "env-1" });
        await ex.execute("a = 100", { sessionId: "env-2" });
        expect((await ex.execute("a += 1\nprint(a)", { sessionId: "env-1" })).stdout).to.equal("2\n");
        expect(await ex.reset("env-2")).to.equal(true);
        expect((await ex.execute("print(a)", { sessionId: "env-2" })).stderr).to.contain("NameError");
        const stats = await ex.stats();
        expect(stats.poolSize).to.equal(2);
        expect(stats.sandbox.enabled).to.equal(true);
      } finally {
        await other.close();
      }
    });

    it("8 concurrent executions on a pool of 4 each see only their own output", async () => {
      await services.registerWithOptions("python_executor", PythonExecutorService, { maxConcurrency: 16 }, { poolSize: 4, timeoutMs: 10_000 });
      const ex = await services.get<PythonExecutorService>("python_executor");
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => ex.execute(`print('Execution ${i}')`)));
      results.forEach((r, i) => {
        expect(r.success).to.equal(true);
        expect(r.stdout).to.equal(`Execution ${i}\n`);
      });
    });

    it("startup failures cross the wire as InterpreterStartError", async () => {
      await services.register("broken_executor", PythonExecutorService, { poolSize: 1, python: "/nonexistent/python3" });
      const ex = await services.get<PythonExecutorService>("broken_executor");
      const err = await ex.execute("print(1)").catch((e) => e);
      expect(err).to.be.instanceOf(InterpreterStartError);
      expect(err.retryable).to.equal(true);
    });

    it("services.reset() stops the pool and its interpreter processes", async () => {
      await services.register("python_executor", PythonExecutorService, { poolSize: 2 });
      const ex = await services.get<PythonExecutorService>("python_executor");
      const pids = (await ex.ready()).interpreters.map((i) => i.pid!);
      expect(pids.every(isRunning)).to.equal(true);
      await services.reset();
      await until(() => !pids.some(isRunning), 10_000, "interpreters to be killed");
    });

    describe("PythonInterpreter with the service", () => {
      beforeEach(async () => {
        await services.registerWithOptions("python_executor", PythonExecutorService, { maxConcurrency: 8 }, { poolSize: 2, timeoutMs: 5_000 });
      });

      it("uses the service (no local processes)", async () => {
        const i = interp({ serviceName: "python_executor" });
        await i.ready();
        expect(i.mode).to.equal("service");
        expect(i.services).to.equal(backend);
        expect(i.serviceName).to.equal("python_executor");
        expect(i.processes).to.equal(0);
        const r = await i.execute("print('Hello from service')");
        expect(r.success).to.equal(true);
        expect(r.stdout).to.contain("Hello from service");
      });

      it("runs the blocks of a reply and keeps per-session state", async () => {
        const i = interp();
        const one = await i.run("Let me compute:\n```python\nprint(1 + 1)\n```<|im_end|>", { sessionId: "env-17" });
        expect(one.messages).to.deep.equal(["Code block 1 executed successfully:\n2\n"]);
        await i.run("```python\na = 1\n```", { sessionId: "env-17" });
        const two = await i.run("```python\na += 1\nprint(a)\n```", { sessionId: "env-17" });
        expect(two.messages).to.deep.equal(["Code block 1 executed successfully:\n2\n"]);
        const other = await i.run("```python\nprint(a)\n```", { sessionId: "env-18" });
        expect(other.messages[0]).to.match(/^Code block 1 failed:\n[\s\S]*NameError/);
        expect(await i.reset("env-17")).to.equal(true);
        const gone = await i.run("```python\nprint(a)\n```", { sessionId: "env-17" });
        expect(gone.messages[0]).to.contain("NameError");
      });

      it("a persistent interpreter without sessionId keeps its own session", async () => {
        const p1 = interp({ persistent: true });
        const p2 = interp({ persistent: true });
        await p1.run("```python\nmine = 'p1'\n```");
        await p2.run("```python\nmine = 'p2'\n```");
        expect((await p1.run("```python\nprint(mine)\n```")).messages[0]).to.equal("Code block 1 executed successfully:\np1\n");
        expect((await p2.run("```python\nprint(mine)\n```")).messages[0]).to.equal("Code block 1 executed successfully:\np2\n");
        await p1.reset();
        expect((await p1.run("```python\nprint(mine)\n```")).messages[0]).to.contain("NameError");
        // a non-persistent one is stateless
        const np = interp();
        await np.run("```python\nz = 1\n```");
        expect((await np.run("```python\nprint(z)\n```")).messages[0]).to.contain("NameError");
      });

      it("reuses an open registry when given one", async () => {
        const i = interp({ registry: services });
        expect((await i.execute("print(3)")).stdout).to.equal("3\n");
        await i.close();
        expect(await services.has("python_executor")).to.equal(true); // the borrowed registry stays open
      });

      it("a missing service is an error naming the namespace and the service", async () => {
        const i = interp({ serviceName: "nonexistent_service" });
        const err = await i.ready().catch((e) => e);
        expect(err).to.be.instanceOf(ServiceNotFoundError);
        expect(err.message).to.contain('"nonexistent_service"');
        expect(err.message).to.contain(`namespace "${ns}"`);
        expect((await i.run("```python\nprint(1)\n```").catch((e) => e))).to.be.instanceOf(ServiceNotFoundError);
      });
    });
  });
}

describe("PythonInterpreter options", () => {
  it("an invalid services backend is a clear error", () => {
    expect(() => new PythonInterpreter({ services: "invalid" as never })).to.throw(InvalidOptionsError, /invalid services backend "invalid": use "nats" or "local"/);
    expect(() => new PythonInterpreter({ services: "ray" as never })).to.throw(InvalidOptionsError);
    expect(() => new PythonInterpreter({ service_name: "x" } as never)).to.throw(InvalidOptionsError, /unknown option "service_name"/);
    expect(() => new PythonInterpreter({ timeoutMs: 0 })).to.throw(InvalidOptionsError, /timeoutMs/);
  });
});
