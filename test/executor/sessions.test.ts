import { expect } from "chai";
import { until } from "../helpers/nats.ts";
import { closeAll, makeService } from "./helpers.ts";

describe("python executor: sessions and dispatch", function () {
  this.timeout(60_000);
  after(closeAll);

  it("128 sessions share 8 interpreters with no crosstalk", async () => {
    const ex = makeService({ poolSize: 8, maxPending: 4096 });
    await ex.ready();
    const ids = Array.from({ length: 128 }, (_, i) => `env-${i}`);
    // Round 1: every session defines its own variables and a function over them, all at once.
    const defined = await Promise.all(
      ids.map((id, i) => ex.execute(`me = ${JSON.stringify(id)}\ncount = ${i}\ndef whoami():\n    return f"{me}:{count}"`, { sessionId: id })),
    );
    expect(defined.every((r) => r.success)).to.equal(true);
    // Rounds 2-3: each session mutates and reads back only its own state, interleaved with the others.
    for (let round = 1; round <= 2; round++) {
      const rs = await Promise.all(
        ids.map((id) =>
          ex.execute("count += 1000\nprint(whoami())\nprint(sorted(k for k in globals() if not k.startswith('__')))", { sessionId: id }),
        ),
      );
      rs.forEach((r, i) => {
        expect(r.success, r.stderr).to.equal(true);
        const [who, names] = r.stdout.trim().split("\n");
        expect(who).to.equal(`env-${i}:${i + 1000 * round}`);
        expect(names).to.equal("['count', 'me', 'whoami']");
        expect(r.stateReset).to.equal(false);
      });
    }
    const s = ex.stats();
    expect(s.sessions).to.equal(128);
    expect(s.poolSize).to.equal(8);
    expect(s.interpreters.reduce((n, i) => n + i.sessions, 0)).to.equal(128);
    // new sessions went to the least loaded idle interpreters: every interpreter holds some
    for (const i of s.interpreters) expect(i.sessions).to.be.greaterThan(0);
    expect(s.restarts).to.equal(0);
  });

  it("sessions arriving while the pool warms up are not piled onto the first interpreter ready", async () => {
    const ex = makeService({ poolSize: 4 });
    const rs = await Promise.all(Array.from({ length: 4 }, (_, i) => ex.execute("pass", { sessionId: `warm-${i}` })));
    expect(new Set(rs.map((r) => r.interpreter)).size).to.equal(4);
  });

  it("a session's calls stick to the interpreter that holds its state", async () => {
    const ex = makeService({ poolSize: 4 });
    const first = await ex.execute("v = 1", { sessionId: "sticky" });
    for (let i = 0; i < 6; i++) {
      const [mine] = await Promise.all([ex.execute("v += 1", { sessionId: "sticky" }), ex.execute("pass"), ex.execute("pass", { sessionId: `other-${i}` })]);
      expect(mine.interpreter).to.equal(first.interpreter);
    }
    expect((await ex.execute("print(v)", { sessionId: "sticky" })).stdout).to.equal("7\n");
  });

  it("new and stateless calls go to an idle interpreter, not behind a busy one", async () => {
    const ex = makeService({ poolSize: 2 });
    await ex.ready();
    const slow = ex.execute("import time\ntime.sleep(1.5)", { sessionId: "slow" });
    await until(() => ex.stats().busy === 1, 5_000, "the slow call to start");
    const t0 = Date.now();
    const quick = await Promise.all([ex.execute("print('a')"), ex.execute("print('b')", { sessionId: "new" })]);
    expect(Date.now() - t0).to.be.lessThan(1_000); // TorchRL's round-robin would wait for the sleeper
    const slowResult = await slow;
    for (const q of quick) expect(q.interpreter).to.not.equal(slowResult.interpreter);
  });

  it("stateless calls one after another stay on the interpreter that ran the last one (it is warm)", async () => {
    const ex = makeService({ poolSize: 3 });
    await ex.ready();
    const rs = [];
    for (let i = 0; i < 5; i++) rs.push(await ex.execute("pass"));
    expect(new Set(rs.map((r) => r.interpreter)).size).to.equal(1);
  });

  it("calls wait when every interpreter is busy and run as soon as one frees", async () => {
    const ex = makeService({ poolSize: 2 });
    await ex.ready();
    const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => ex.execute(`import time\ntime.sleep(0.1)\nprint(${i})`)));
    expect(rs.map((r) => r.stdout)).to.deep.equal(["0\n", "1\n", "2\n", "3\n", "4\n", "5\n"]);
    expect(Math.max(...rs.map((r) => r.queuedMs))).to.be.greaterThan(50);
  });

  it("the least recently used sessions are evicted beyond maxSessionsPerInterpreter, and say so", async () => {
    const ex = makeService({ poolSize: 1, maxSessionsPerInterpreter: 2 });
    await ex.execute("x = 'a'", { sessionId: "a" });
    await ex.execute("x = 'b'", { sessionId: "b" });
    await ex.execute("x = 'c'", { sessionId: "c" }); // evicts a
    const a = await ex.execute("print(x)", { sessionId: "a" }); // evicts b
    expect(a.stateReset).to.equal(true);
    expect(a.resetReason).to.contain("evicted");
    expect(a.stderr).to.contain("NameError");
    expect((await ex.execute("print(x)", { sessionId: "c" })).stdout).to.equal("c\n");
    expect(ex.stats().sessions).to.equal(2);
    expect(ex.stats().evictions).to.equal(2);
    // the evicted state is really gone from the interpreter, not just unreachable
    const probe = await ex.execute("import gc\nprint(sum(1 for o in gc.get_objects() if isinstance(o, dict) and o.get('x') == 'b'))");
    expect(probe.stdout).to.equal("0\n");
  });

  it("a timed-out session on a shared interpreter resets only the sessions pinned there", async () => {
    const ex = makeService({ poolSize: 2 });
    await ex.ready();
    const a = await ex.execute("val = 'A'", { sessionId: "A" });
    const b = await ex.execute("val = 'B'", { sessionId: "B" });
    expect(a.interpreter).to.not.equal(b.interpreter);
    const t = await ex.execute("while True: pass", { sessionId: "T", timeoutMs: 300 });
    expect(t.timedOut).to.equal(true);
    const onSame = t.interpreter === a.interpreter ? "A" : "B";
    const other = onSame === "A" ? "B" : "A";
    const lost = await ex.execute("print(val)", { sessionId: onSame });
    expect(lost.stateReset).to.equal(true);
    expect(lost.resetReason).to.contain("timed out");
    const kept = await ex.execute("print(val)", { sessionId: other });
    expect(kept.stdout).to.equal(`${other}\n`);
    expect(kept.stateReset).to.equal(false);
  });
});
