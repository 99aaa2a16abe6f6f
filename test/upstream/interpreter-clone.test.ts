import { expect } from "chai";
import { ClosedError } from "../../src/errors/index.ts";
import { PythonExecutorService, PythonInterpreter } from "../../src/executor/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";

// TorchRL's PythonInterpreter.clone(): a new transform with the same configuration.
describe("PythonInterpreter.clone() with local processes (upstream)", function () {
  this.timeout(30_000);
  const made: PythonInterpreter[] = [];
  afterEach(async () => {
    await Promise.all(made.splice(0).map((i) => i.close()));
  });

  it("a clone of a persistent interpreter has the same options, runs code, and has state of its own", async () => {
    const interp = new PythonInterpreter({ services: null, persistent: true, timeoutMs: 5_000 });
    const clone = interp.clone();
    made.push(interp, clone);
    expect(clone).to.be.instanceOf(PythonInterpreter).and.not.equal(interp);
    expect([clone.services, clone.namespace, clone.serviceName, clone.persistent, clone.mode]).to.deep.equal([null, "default", "python_executor", true, "persistent"]);

    await interp.run("```python\na = 1\n```");
    expect((await clone.run("```python\nprint(2 + 2)\n```")).messages).to.deep.equal(["Code block 1 executed successfully:\n4\n"]);
    expect((await clone.run("```python\nprint(a)\n```")).messages[0]).to.match(/^Code block 1 failed:\n[\s\S]*NameError/);
    expect((await interp.run("```python\nprint(a)\n```")).messages).to.deep.equal(["Code block 1 executed successfully:\n1\n"]);

    // Closing the original leaves the clone (and its processes) working, and the other way round.
    await interp.close();
    expect(await interp.execute("print(1)").catch((e) => e)).to.be.instanceOf(ClosedError);
    expect((await clone.execute("print('still here')")).stdout).to.equal("still here\n");
    expect(clone.processes).to.equal(1);
    const second = clone.clone();
    made.push(second);
    await clone.close();
    expect((await second.execute("print(3)")).stdout).to.equal("3\n");
  });

  it("keeps the temporary mode and the time limit", async () => {
    const interp = new PythonInterpreter({ services: null, persistent: false, timeoutMs: 300 });
    const clone = interp.clone();
    made.push(interp, clone);
    expect(clone.mode).to.equal("temporary");
    const r = await clone.execute("while True: pass");
    expect(r.timedOut).to.equal(true);
    expect(r.stderr).to.contain("timed out after 300 ms");
  });
});

for (const backend of ["local", "nats"] as const) {
  describe(`PythonInterpreter.clone() of a shared-service interpreter (${backend} backend, upstream)`, function () {
    this.timeout(30_000);
    let ns: string;
    let services: Services;
    const made: PythonInterpreter[] = [];
    let servers: { servers?: string } = {};

    beforeEach(async () => {
      servers = backend === "nats" ? { servers: testUrl() } : {};
      ns = uniqueNamespace("pyclone");
      services = await getServices({ backend, namespace: ns, ...servers });
      await services.registerWithOptions("python_executor", PythonExecutorService, { maxConcurrency: 4 }, { poolSize: 1, timeoutMs: 5_000 });
    });
    afterEach(async () => {
      await Promise.all(made.splice(0).map((i) => i.close()));
      await services.reset();
      await services.close();
    });

    it("uses the same service and namespace; closing the original (and its connection) leaves the clone working", async () => {
      const interp = new PythonInterpreter({ services: backend, namespace: ns, persistent: true, ...servers });
      const clone = interp.clone();
      made.push(interp, clone);
      expect([clone.services, clone.namespace, clone.serviceName, clone.mode]).to.deep.equal([backend, ns, "python_executor", "service"]);
      await interp.execute("x = 41");
      // Its own persistent session on the shared pool: the original's state is not the clone's.
      expect((await clone.execute("print(x)")).stderr).to.contain("NameError");
      await interp.close();
      expect((await clone.execute("print(6 * 7)")).stdout).to.equal("42\n");
      expect((await clone.run("```python\nprint('ok')\n```")).messages).to.deep.equal(["Code block 1 executed successfully:\nok\n"]);
    });

    it("a registry given as an option is shared, and closing a clone leaves it open", async () => {
      const interp = new PythonInterpreter({ services: backend, registry: services });
      const clone = interp.clone();
      made.push(interp, clone);
      expect(clone.namespace).to.equal(ns);
      await clone.close();
      expect((await interp.execute("print('open')")).stdout).to.equal("open\n");
      expect(await services.has("python_executor")).to.equal(true);
    });
  });
}
