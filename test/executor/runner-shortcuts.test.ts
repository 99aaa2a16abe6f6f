import { expect } from "chai";
import { until } from "../helpers/nats.ts";
import { closeAll, isRunning, makeService } from "./helpers.ts";

/**
 * The runner keeps per-call bookkeeping off the caller's path (issue 15): it reuses a call's
 * capture files when nothing else can hold them, sweeps its uid only when something may be left
 * running, sweeps after the reply, and reads a request in one go. None of that may let one call's
 * output or processes reach another call.
 */
describe("python executor: the runner's shortcuts keep calls apart", function () {
  this.timeout(30_000);
  after(closeAll);

  it("a call's output, printed or written at C level, never shows in the next call's", async () => {
    const ex = makeService({ poolSize: 1 });
    const a = await ex.execute("import os, sys\nprint('A' * 5000)\nos.write(1, b'raw-A\\n')\nsys.stderr.write('err-A\\n')", { sessionId: "a" });
    expect(a.stdout).to.equal(`${"A".repeat(5000)}\nraw-A\n`);
    expect(a.stderr).to.equal("err-A\n");
    const b = await ex.execute("print('B')", { sessionId: "b" });
    expect(b.interpreter).to.equal(a.interpreter);
    expect([b.stdout, b.stderr]).to.deep.equal(["B\n", ""]);
    const c = await ex.execute("pass");
    expect([c.stdout, c.stderr]).to.deep.equal(["", ""]);
  });

  it("a process a call left running cannot write into a later call's output", async () => {
    // Without the sandbox nothing kills it: the later call must still get capture files of its own.
    const ex = makeService({ poolSize: 1, sandbox: false });
    const r = await ex.execute("import subprocess\np = subprocess.Popen(['sh', '-c', 'sleep 0.3; echo late; echo late-err >&2'])\nprint(p.pid)");
    const pid = Number(r.stdout.trim());
    const next = await ex.execute("import time\ntime.sleep(0.8)\nprint('mine')");
    expect([next.stdout, next.stderr]).to.deep.equal(["mine\n", ""]);
    await until(() => !isRunning(pid), 5_000, "the leftover process to end");
  });

  it("a thread holding a copy of a call's stdout cannot write into a later call's output", async () => {
    const ex = makeService({ poolSize: 1 });
    await ex.execute("import os, threading, time\nfd = os.dup(1)\ndef later():\n    time.sleep(0.3)\n    os.write(fd, b'late\\n')\nthreading.Thread(target=later, daemon=True).start()", { sessionId: "t" });
    const next = await ex.execute("import time\ntime.sleep(0.8)\nprint('mine')", { sessionId: "u" });
    expect([next.stdout, next.stderr]).to.deep.equal(["mine\n", ""]);
  });

  it("processes left behind are swept even when user code stops the runner being their subreaper", async function () {
    const ex = makeService({ poolSize: 1 });
    if (!(await ex.ready()).sandbox.dedicatedUid) this.skip(); // no uid of its own: no sweep at all
    // The orphaned sleep goes to init, not to the runner, and the runner has no child left.
    const r = await ex.execute(
      "import ctypes, subprocess\nctypes.CDLL(None).prctl(36, 0, 0, 0, 0)\nout = subprocess.run(['sh', '-c', 'sleep 300 >/dev/null 2>&1 & echo $!'], capture_output=True, text=True).stdout\nprint(out.strip())",
    );
    const pid = Number(r.stdout.trim());
    expect(pid).to.be.greaterThan(0);
    await until(() => !isRunning(pid), 5_000, "the orphan to be swept");
  });

  it("a request larger than one read arrives whole (several MiB of UTF-8 code)", async () => {
    const ex = makeService({ poolSize: 1 });
    const big = "é".repeat(1_500_000);
    const r = await ex.execute(`s = "${big}"\nprint(len(s), len(s.encode()))`);
    expect(r.stdout).to.equal("1500000 3000000\n");
    expect((await ex.execute("print('next')")).stdout).to.equal("next\n");
  });
});
