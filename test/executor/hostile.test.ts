import { expect } from "chai";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InterpreterStartError, type PythonExecutorService } from "../../src/executor/index.ts";
import { sweepUid } from "../../src/executor/sandbox.ts";
import { testUrl, until } from "../helpers/nats.ts";
import { closeAll, isRunning, liveOfUids, makeService, uidsOf } from "./helpers.ts";

/** Hostile and broken user code: none of it may desync, leak, hang or shrink the pool. */
describe("python executor: hostile code", function () {
  this.timeout(30_000);
  let ex: PythonExecutorService;
  before(async () => {
    ex = makeService({ poolSize: 2, timeoutMs: 5_000, maxOutputBytes: 64 * 1024, sandbox: { memoryBytes: 512 * 1024 * 1024, fileSizeBytes: 16 * 1024 * 1024, maxProcesses: 32 } });
    await ex.ready();
  });
  after(closeAll);

  const fullPool = () => until(() => ex.stats().alive === 2, 10_000, "the pool back at full size");

  describe("framing cannot be broken from user code", () => {
    it("printing the old protocol's markers and fake frames is just output", async () => {
      const code = [
        "import sys, struct",
        "print('---END---'); print('---START---'); print('---READY---')",
        "sys.stdout.buffer.write(struct.pack('>I', 20) + b'{\"id\": 1, \"ok\": true}')",
        "print()",
        "print('---END---', file=sys.stderr)",
      ].join("\n");
      const r = await ex.execute(code, { sessionId: "markers" });
      expect(r.success).to.equal(true);
      expect(r.stdout).to.contain("---END---\n---START---\n---READY---\n");
      expect(r.stdout).to.contain('{"id": 1, "ok": true}');
      expect(r.stderr).to.equal("---END---\n");
      const next = await ex.execute("print('still in sync')", { sessionId: "markers" });
      expect(next.stdout).to.equal("still in sync\n");
    });

    it("binary bytes on stdout come back (invalid UTF-8 replaced) and do not desync", async () => {
      const r = await ex.execute("import sys\nsys.stdout.buffer.write(bytes(range(256)))\nsys.stdout.flush()\nprint('\\nafter')");
      expect(r.success).to.equal(true);
      expect(r.stdout).to.contain("\u0000\u0001");
      expect(r.stdout).to.contain("\ufffd");
      expect(r.stdout.endsWith("\nafter\n")).to.equal(true);
      expect((await ex.execute("print(1 + 1)")).stdout).to.equal("2\n");
    });

    it("C-level and subprocess output is captured, in order", async () => {
      const r = await ex.execute("import os, subprocess\nprint('py first')\nos.system('echo from shell')\nos.write(1, b'raw fd\\n')\nsubprocess.run(['echo', 'child'])\nprint('py last')");
      expect(r.stdout).to.equal("py first\nfrom shell\nraw fd\nchild\npy last\n");
    });

    it("threads left running by one session do not print into another session's output", async () => {
      const solo = makeService({ poolSize: 1 });
      const a = await solo.execute("import threading, time\ndef chatter():\n    while True:\n        print('A-leak')\n        time.sleep(0.005)\nthreading.Thread(target=chatter, daemon=True).start()\ntime.sleep(0.05)", { sessionId: "A" });
      expect(a.stdout).to.contain("A-leak"); // its own call sees its thread's output
      const b = await solo.execute("import time\ntime.sleep(0.1)\nprint('B only')", { sessionId: "B" });
      expect(b.interpreter).to.equal(a.interpreter);
      expect(b.stdout).to.equal("B only\n");
    });

    it("code that closes or deletes sys.stdout/stdin breaks only itself", async () => {
      const r = await ex.execute("import sys\nsys.stdin.close()\ndel sys.stdout\ndel sys.stderr", { sessionId: "wrecker" });
      expect(r.success).to.equal(true);
      expect(r.stateReset).to.equal(false);
      const next = await ex.execute("import sys\nprint(sys.stdin.read() == '')", { sessionId: "wrecker" });
      expect(next.stdout).to.equal("True\n");
    });

    it("reading stdin gets EOF at once instead of hanging", async () => {
      const r = await ex.execute("import sys\nprint(repr(sys.stdin.read()))\nprint(repr(open(0).read()))\ninput('prompt> ')");
      expect(r.stdout).to.contain("''\n''\n");
      expect(r.success).to.equal(false);
      expect(r.stderr).to.contain("EOFError");
      expect(r.durationMs).to.be.lessThan(2_000);
    });

    it("writing garbage to the channel fd replaces only that interpreter", async () => {
      const r = await ex.execute("import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'\\x00\\x00\\x00\\x05hello')\n    except OSError:\n        pass\nimport time\ntime.sleep(1)", { sessionId: "vandal" });
      expect(r.success).to.equal(false);
      expect(r.stateReset).to.equal(true);
      expect(r.stderr).to.match(/protocol/);
      await fullPool();
      expect((await ex.execute("print('fine')")).stdout).to.equal("fine\n");
    });
  });

  describe("output caps", () => {
    it("a 1 GB print is cut at maxOutputBytes with truncated set, quickly", async () => {
      const r = await ex.execute("chunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    print(chunk)\nimport sys\nprint('err tail', file=sys.stderr)");
      expect(r.success).to.equal(true);
      expect(r.truncated).to.equal(true);
      expect(r.stdout.length).to.equal(64 * 1024);
      expect(r.stderr).to.equal("err tail\n");
      expect(r.durationMs).to.be.lessThan(5_000);
    });

    it("huge C-level output stops at the file-size limit, truncated", async () => {
      const r = await ex.execute("import os\nos.system('head -c 200000000 /dev/zero | tr \"\\\\0\" y')\nprint('survived')");
      expect(r.truncated).to.equal(true);
      expect(r.stdout.length).to.be.at.most(64 * 1024);
      expect(r.stdout.startsWith("yyyy")).to.equal(true);
    });

    it("files larger than fileSizeBytes cannot be written", async () => {
      const r = await ex.execute("with open('big.bin', 'wb') as f:\n    f.write(b'x' * (32 * 1024 * 1024))");
      expect(r.success).to.equal(false);
      expect(r.stderr).to.match(/File too large|Errno 27/);
    });
  });

  describe("timeouts and crashes", () => {
    it("a timeout kills and replaces the interpreter; partial output and the process group go too", async () => {
      const restarts = ex.stats().restarts;
      const r = await ex.execute("import subprocess, sys\np = subprocess.Popen(['sleep', '300'])\nprint('child', p.pid, flush=True)\nwhile True:\n    pass", {
        sessionId: "spin",
        timeoutMs: 700,
      });
      expect(r.timedOut).to.equal(true);
      expect(r.success).to.equal(false);
      expect(r.returncode).to.equal(-1);
      expect(r.stateReset).to.equal(true);
      expect(r.stderr).to.match(/timed out after 700 ms.*state was reset/);
      const pid = Number(/child (\d+)/.exec(r.stdout)?.[1]);
      expect(pid).to.be.greaterThan(0);
      await until(() => !isRunning(pid), 5_000, "the child of the timed-out code to be gone");
      expect(ex.stats().restarts).to.equal(restarts + 1);
      await fullPool();
      const after = await ex.execute("print(1)", { sessionId: "spin" });
      expect(after.stdout).to.equal("1\n");
    });

    it("os._exit gives a typed result and the pool comes back to full size", async () => {
      const r = await ex.execute("import os\nprint('before', flush=True)\nos._exit(7)", { sessionId: "quitter" });
      expect(r.success).to.equal(false);
      expect(r.returncode).to.equal(7);
      expect(r.stdout).to.equal("before\n");
      expect(r.stderr).to.contain("exited with code 7");
      expect(r.stateReset).to.equal(true);
      await fullPool();
      expect((await ex.execute("print('next works')")).stdout).to.equal("next works\n");
    });

    it("a segfault gives returncode -11 and the Python stack", async () => {
      const r = await ex.execute("import ctypes\nctypes.string_at(0)");
      expect(r.success).to.equal(false);
      expect(r.returncode).to.equal(-11);
      expect(r.stderr).to.contain("Segmentation fault");
      expect(r.stderr).to.contain('File "<code>", line 2');
      await fullPool();
    });

    it("a crash resets the other sessions on that interpreter, and their next result says so", async () => {
      const solo = makeService({ poolSize: 1 });
      await solo.execute("x = 42", { sessionId: "bystander" });
      const crash = await solo.execute("import os\nos._exit(1)", { sessionId: "crasher" });
      expect(crash.returncode).to.equal(1);
      const r = await solo.execute("print(x)", { sessionId: "bystander" });
      expect(r.stateReset).to.equal(true);
      expect(r.resetReason).to.match(/replaced after the interpreter exited with code 1/);
      expect(r.stderr).to.contain("NameError");
      const again = await solo.execute("x = 1\nprint(x)", { sessionId: "bystander" });
      expect(again.stateReset).to.equal(false);
    });

    it("an interpreter killed from outside while idle is replaced", async () => {
      const victim = ex.stats().interpreters.find((i) => i.state === "idle")!;
      process.kill(victim.pid!, "SIGKILL");
      await until(() => ex.stats().interpreters[victim.index]!.pid !== victim.pid && ex.stats().alive === 2, 10_000, "replacement");
      const rs = await Promise.all([ex.execute("print(1)"), ex.execute("print(2)")]);
      expect(rs.map((r) => r.stdout)).to.deep.equal(["1\n", "2\n"]);
    });
  });

  describe("sandbox", () => {
    it("a memory bomb gets MemoryError, the interpreter is replaced, the pool keeps working", async () => {
      const r = await ex.execute("hog = []\nwhile True:\n    hog.append(bytearray(16 * 1024 * 1024))", { sessionId: "hog" });
      expect(r.success).to.equal(false);
      expect(r.stderr).to.contain("MemoryError");
      expect(r.stateReset).to.equal(true);
      const big = await ex.execute("s = 'a' * (10 ** 10)");
      expect(big.stderr).to.contain("MemoryError");
      await fullPool();
      expect((await ex.execute("print(sum(range(10)))", { sessionId: "hog" })).stdout).to.equal("45\n");
    });

    it("a fork bomb is contained and leaves nothing running", async function () {
      if (!ex.stats().sandbox.dedicatedUid) this.skip(); // reported in stats().sandbox.unavailable
      const bomb = makeService({ poolSize: 1, timeoutMs: 1_500, sandbox: { maxProcesses: 16 } });
      const uids = uidsOf(await bomb.ready().then(() => bomb));
      const r = await bomb.execute("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass");
      expect(r.timedOut).to.equal(true);
      await until(() => liveOfUids(uids).length === 0, 10_000, "every process of the bomb's uid to be gone");
      await until(() => bomb.stats().alive === 1, 10_000, "replacement");
      expect((await bomb.execute("print('alive')")).stdout).to.equal("alive\n");
      // a bomb that gives up on the first failed fork ends by itself, without a timeout
      const quick = await bomb.execute("import os\nwhile True:\n    os.fork()");
      expect(quick.success).to.equal(false);
      expect(quick.stderr).to.match(/BlockingIOError|Resource temporarily unavailable/);
      await bomb.close();
      expect(liveOfUids(uidsOf(bomb))).to.deep.equal([]);
    });

    it("processes left behind by a call (even setsid daemons) are killed after it", async function () {
      if (!ex.stats().sandbox.dedicatedUid) this.skip();
      const r = await ex.execute("import subprocess\np = subprocess.Popen(['sleep', '300'], start_new_session=True)\nprint(p.pid)");
      const pid = Number(r.stdout.trim());
      await until(() => !isRunning(pid), 5_000, "the daemon to be gone");
    });

    it("the uid sweep refuses any uid that is not a sandbox uid (kill -1 as root would hit the host)", async () => {
      const plan = { setpriv: null, kill: null } as never;
      for (const uid of [0, 1000, 65534, -1, 1.5]) {
        expect(await sweepUid(plan, uid).catch((e) => e), String(uid)).to.be.instanceOf(Error);
      }
    });

    it("user code sees a scrubbed environment: no host secrets, no NATS settings", async () => {
      process.env.ACTORBUS_TEST_SECRET = "s3cret-token";
      try {
        const s = makeService({ poolSize: 1, sandbox: { env: { OMP_NUM_THREADS: "1" } } });
        const r = await s.execute("import os, json\nprint(json.dumps(dict(os.environ)))");
        const env = JSON.parse(r.stdout) as Record<string, string>;
        expect(Object.values(env).join(" ")).to.not.contain("s3cret-token");
        expect(env).to.not.have.property("NATS_URL");
        expect(env).to.not.have.property("ACTORBUS_SHARED_TEST_URL");
        expect(env.OMP_NUM_THREADS).to.equal("1");
        expect(Object.keys(env).sort()).to.deep.equal(["HOME", "LANG", "LC_ALL", "OMP_NUM_THREADS", "PATH", "TMPDIR"]);
      } finally {
        delete process.env.ACTORBUS_TEST_SECRET;
      }
    });

    it("code runs in a private temp directory, removed on close", async () => {
      const s = makeService({ poolSize: 1 });
      const r = await s.execute("import os\nopen('note.txt', 'w').write('hi')\nprint(os.getcwd())\nprint(os.environ['HOME'] == os.getcwd())");
      const [cwd, homeIsCwd] = r.stdout.trim().split("\n");
      expect(cwd).to.contain("actorbus-py-");
      expect(homeIsCwd).to.equal("True");
      expect(existsSync(join(cwd!, "note.txt"))).to.equal(true);
      await s.close();
      expect(existsSync(cwd!)).to.equal(false);
    });

    it("user code cannot reach the network (not even the NATS server on this host)", async function () {
      if (ex.stats().sandbox.network !== "isolated") this.skip(); // reported in stats().sandbox.unavailable
      const { hostname, port } = new URL(testUrl());
      const r = await ex.execute(`import socket\ns = socket.create_connection((${JSON.stringify(hostname)}, ${port}), timeout=2)\nprint(s.recv(100))`);
      expect(r.success).to.equal(false);
      expect(r.stderr).to.match(/Network is unreachable|Connection refused|timed out/);
    });

    it("runs as an unprivileged uid of its own when this process is root", async function () {
      if (!ex.stats().sandbox.dedicatedUid) this.skip();
      const r = await ex.execute("import os\nprint(os.getuid())\nprint(os.access('/etc/shadow', os.R_OK))");
      const [uid, shadow] = r.stdout.trim().split("\n");
      expect(ex.stats().interpreters.map((i) => String(i.uid))).to.include(uid);
      expect(shadow).to.equal("False");
    });

    it("the sandbox can be turned off, and says so", async () => {
      const s = makeService({ poolSize: 1, sandbox: false });
      const st = await s.ready();
      expect(st.sandbox.enabled).to.equal(false);
      expect(st.sandbox.unavailable.join()).to.contain("sandbox disabled");
      expect((await s.execute("print('plain')")).stdout).to.equal("plain\n");
    });
  });

  describe("interpreters that cannot start", () => {
    it("a missing python fails fast with InterpreterStartError", async () => {
      const s = makeService({ poolSize: 1, python: "/nonexistent/python3" });
      const err = await s.execute("print(1)").catch((e) => e);
      expect(err).to.be.instanceOf(InterpreterStartError);
      expect(err.retryable).to.equal(true);
      expect(err.message).to.contain("/nonexistent/python3");
    });

    it("a crash loop at startup backs off and then fails calls with the startup error", async () => {
      const dir = mkdtempSync(join(tmpdir(), "fakepy-"));
      chmodSync(dir, 0o755);
      const fake = join(dir, "python3");
      // Answers the sandbox's identity probe like python, but dies whenever it should run the runner.
      writeFileSync(fake, '#!/bin/sh\nfor a in "$@"; do case "$a" in *runner.py) echo "boom: broken install" >&2; exit 1;; esac; done\necho "$0"; echo 3.11.2; echo /usr\n');
      chmodSync(fake, 0o755);
      try {
        const s = makeService({ poolSize: 2, python: fake });
        const t0 = Date.now();
        const err = await s.execute("print(1)").catch((e) => e);
        expect(err).to.be.instanceOf(InterpreterStartError);
        expect(err.message).to.contain("boom: broken install");
        expect(Date.now() - t0).to.be.lessThan(10_000);
        expect(s.stats().startError).to.contain("boom");
        expect(s.stats().alive).to.equal(0);
        await s.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
