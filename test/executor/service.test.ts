import { expect } from "chai";
import { ClosedError, InvalidOptionsError, OverloadedError } from "../../src/errors/index.ts";
import { PythonExecutorService } from "../../src/executor/index.ts";
import { until } from "../helpers/nats.ts";
import { closeAll, liveOfUids, makeService, uidsOf } from "./helpers.ts";

describe("PythonExecutorService used directly (no registry)", function () {
  this.timeout(30_000);
  after(closeAll);

  describe("TorchRL's cases", () => {
    let ex: PythonExecutorService;
    before(() => {
      ex = makeService({ poolSize: 4, timeoutMs: 10_000 });
    });

    it("executes code: Result: 30", async () => {
      const r = await ex.execute("x = 10\ny = 20\nresult = x + y\nprint(f\"Result: {result}\")\n");
      expect(r.success).to.equal(true);
      expect(r.stdout).to.equal("Result: 30\n");
      expect(r.stderr).to.equal("");
      expect(r.returncode).to.equal(0);
      expect(r.timedOut).to.equal(false);
      expect(r.durationMs).to.be.a("number").and.to.be.at.least(0);
    });

    it("reports an exception: success false, the traceback in stderr", async () => {
      const r = await ex.execute("raise ValueError('Test error')");
      expect(r.success).to.equal(false);
      expect(r.returncode).to.equal(1);
      expect(r.stderr).to.contain("ValueError: Test error");
      expect(r.stderr).to.contain('File "<code>", line 1');
      expect(r.stderr).to.not.contain("runner.py"); // the runner's own frame is hidden
    });

    it("8 concurrent executions on a pool of 4: each sees only its own output", async () => {
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => ex.execute(`import time\ntime.sleep(0.05)\nprint('Execution ${i}')`)));
      expect(results).to.have.length(8);
      results.forEach((r, i) => {
        expect(r.success, JSON.stringify(r)).to.equal(true);
        expect(r.stdout).to.equal(`Execution ${i}\n`);
      });
      // the load spread over the pool instead of queueing on one interpreter
      expect(new Set(results.map((r) => r.interpreter)).size).to.equal(4);
    });
  });

  describe("semantics", () => {
    let ex: PythonExecutorService;
    before(() => {
      ex = makeService({ poolSize: 2 });
    });

    it("warnings on stderr do not fail an execution", async () => {
      const r = await ex.execute("import warnings\nwarnings.warn('careful')\nprint('done')");
      expect(r.success).to.equal(true);
      expect(r.stdout).to.equal("done\n");
      expect(r.stderr).to.contain("UserWarning: careful");
      const w = await ex.execute("import sys\nprint('note', file=sys.stderr)");
      expect(w.success).to.equal(true);
      expect(w.stderr).to.equal("note\n");
    });

    it("a syntax error is a failed execution", async () => {
      const r = await ex.execute("def f(:\n  pass");
      expect(r.success).to.equal(false);
      expect(r.stderr).to.contain("SyntaxError");
    });

    it("state persists within a session; functions see their block's globals", async () => {
      expect((await ex.execute("a = 1\ndef bump():\n    global a\n    a += 1\n    return a", { sessionId: "s1" })).success).to.equal(true);
      const r = await ex.execute("print(bump(), a)", { sessionId: "s1" });
      expect(r.stdout).to.equal("2 2\n");
      const fn = await ex.execute("k = 10\ndef get_k():\n    return k\nprint(get_k())");
      expect(fn.stdout).to.equal("10\n");
    });

    it("different sessions and stateless calls never see each other's variables", async () => {
      await ex.execute("secret = 'one'", { sessionId: "sa" });
      await ex.execute("secret = 'two'", { sessionId: "sb" });
      expect((await ex.execute("print(secret)", { sessionId: "sa" })).stdout).to.equal("one\n");
      expect((await ex.execute("print(secret)", { sessionId: "sb" })).stdout).to.equal("two\n");
      const none = await ex.execute("print(secret)");
      expect(none.success).to.equal(false);
      expect(none.stderr).to.contain("NameError");
      await ex.execute("leak = 1");
      expect((await ex.execute("print('leak' in globals())")).stdout).to.equal("False\n");
    });

    it("a session's calls run one at a time, in order", async () => {
      const first = ex.execute("import time\nn = 1\ntime.sleep(0.2)", { sessionId: "ordered" });
      const second = ex.execute("n += 1\nprint(n)", { sessionId: "ordered" });
      const [a, b] = await Promise.all([first, second]);
      expect(a.success).to.equal(true);
      expect(b.stdout).to.equal("2\n");
      expect(a.interpreter).to.equal(b.interpreter);
    });

    it("reset(sessionId) forgets the session's variables", async () => {
      await ex.execute("kept = 5", { sessionId: "r1" });
      expect(await ex.reset("r1")).to.equal(true);
      const r = await ex.execute("print(kept)", { sessionId: "r1" });
      expect(r.success).to.equal(false);
      expect(r.stderr).to.contain("NameError");
      expect(r.stateReset).to.equal(false); // asked for, so not reported as a loss
      expect(await ex.reset("never-used")).to.equal(false);
    });

    it("sys.exit gives its code without killing the interpreter", async () => {
      const before = ex.stats().restarts;
      const zero = await ex.execute("import sys\nsys.exit(0)");
      expect(zero.success).to.equal(true);
      expect(zero.returncode).to.equal(0);
      const three = await ex.execute("import sys\nprint('bye')\nsys.exit(3)", { sessionId: "ex" });
      expect(three.success).to.equal(false);
      expect(three.returncode).to.equal(3);
      expect(three.stdout).to.equal("bye\n");
      const msg = await ex.execute("raise SystemExit('fatal: bad input')");
      expect(msg.returncode).to.equal(1);
      expect(msg.stderr).to.contain("fatal: bad input");
      expect(ex.stats().restarts).to.equal(before);
    });

    it("per-call timeoutMs overrides the default, up to maxTimeoutMs", async () => {
      const r = await ex.execute("import time\ntime.sleep(5)", { timeoutMs: 300 });
      expect(r.timedOut).to.equal(true);
      const err = await ex.execute("pass", { timeoutMs: 10_000_000 }).catch((e) => e);
      expect(err).to.be.instanceOf(InvalidOptionsError);
      expect(err.message).to.contain("maxTimeoutMs");
    });

    it("stats() reports the pool, sessions and the sandbox in force", async () => {
      await until(() => ex.stats().alive === 2, 10_000, "pool back at full size");
      const s = ex.stats();
      expect(s.poolSize).to.equal(2);
      expect(s.interpreters).to.have.length(2);
      expect(s.sessions).to.be.greaterThan(0);
      expect(s.executions).to.be.greaterThan(0);
      expect(s.sandbox.enabled).to.equal(true);
      expect(s.sandbox.limits?.memoryBytes).to.equal(1024 * 1024 * 1024);
      expect(s.sandbox.unavailable).to.be.an("array");
      for (const i of s.interpreters) expect(i.rssBytes).to.be.greaterThan(1_000_000);
    });
  });

  describe("options and lifecycle", () => {
    it("validates options with messages that name the fix", () => {
      const bad: [unknown, RegExp][] = [
        [{ poolSize: 0 }, /poolSize must be an integer >= 1/],
        [{ timeoutMs: -5 }, /timeoutMs must be a number of milliseconds in 1\.\.2147483647/],
        [{ pool_size: 4 }, /unknown option "pool_size"; valid options are poolSize/],
        [{ sandbox: { memoryBytes: 10 } }, /memoryBytes must be an integer >= /],
        [{ sandbox: { nework: false } }, /unknown option "nework"/],
        [{ timeoutMs: 500_000 }, /maxTimeoutMs \(300000\) must be >= timeoutMs/],
        [{ python: "" }, /python must be an executable/],
      ];
      for (const [opts, re] of bad) {
        expect(() => new PythonExecutorService(opts as never), JSON.stringify(opts)).to.throw(InvalidOptionsError, re);
      }
    });

    it("execute validates its arguments", async () => {
      const ex = makeService({ poolSize: 1 });
      expect(await ex.execute(42 as never).catch((e) => e)).to.be.instanceOf(TypeError);
      const e = await ex.execute("pass", { session: "x" } as never).catch((e) => e);
      expect(e).to.be.instanceOf(InvalidOptionsError);
      expect(e.message).to.contain('unknown option "session"');
    });

    it("maxPending bounds the queue: OverloadedError beyond it", async () => {
      const ex = makeService({ poolSize: 1, maxPending: 1 });
      await ex.ready();
      const running = ex.execute("import time\ntime.sleep(0.5)");
      await until(() => ex.stats().busy === 1, 5_000, "first call running");
      const waiting = ex.execute("print('second')");
      const err = await ex.execute("print('third')").catch((e) => e);
      expect(err).to.be.instanceOf(OverloadedError);
      expect(err.retryable).to.equal(true);
      expect((await running).success).to.equal(true);
      expect((await waiting).stdout).to.equal("second\n");
    });

    it("close() kills every interpreter, is idempotent, and fails later calls with ClosedError", async () => {
      const ex = makeService({ poolSize: 2 });
      const s = await ex.ready();
      const uids = uidsOf(ex);
      const pids = s.interpreters.map((i) => i.pid!);
      const inflight = ex.execute("import time\ntime.sleep(30)");
      await until(() => ex.stats().busy === 1, 5_000, "call running");
      await Promise.all([ex.close(), ex.close()]);
      expect(await inflight.catch((e) => e)).to.be.instanceOf(ClosedError);
      expect(await ex.execute("pass").catch((e) => e)).to.be.instanceOf(ClosedError);
      for (const pid of pids) expect(() => process.kill(pid, 0)).to.throw();
      expect(liveOfUids(uids)).to.deep.equal([]);
    });

    it("supports await using (Symbol.asyncDispose)", async () => {
      let pid: number | null = null;
      {
        await using ex = new PythonExecutorService({ poolSize: 1 });
        pid = (await ex.ready()).interpreters[0]!.pid;
        expect((await ex.execute("print(1)")).stdout).to.equal("1\n");
      }
      expect(() => process.kill(pid!, 0)).to.throw();
    });
  });
});
