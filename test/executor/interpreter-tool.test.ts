import { expect } from "chai";
import { ClosedError } from "../../src/errors/index.ts";
import { extractPythonBlocks, PythonInterpreter } from "../../src/executor/index.ts";
import { until } from "../helpers/nats.ts";
import { isRunning } from "./helpers.ts";

describe("extractPythonBlocks", () => {
  it("takes only fenced python blocks, in order", () => {
    const reply = [
      "Plan:",
      "```python\na = 1\n```",
      "```bash\nrm -rf /\n```",
      "```\nplain fence\n```",
      "```py\nb = 2\n```",
      "inline ```python x``` is not a block",
      "```python3\r\nc = 3\r\n```<|im_end|>",
    ].join("\n");
    expect(extractPythonBlocks(reply)).to.deep.equal(["a = 1", "b = 2", "c = 3"]);
    expect(extractPythonBlocks("no code here")).to.deep.equal([]);
    expect(extractPythonBlocks("```python\nfor i in range(2):\n    print(i)\n\n```")).to.deep.equal(["for i in range(2):\n    print(i)\n"]);
  });
});

for (const persistent of [true, false]) {
  describe(`PythonInterpreter with local ${persistent ? "persistent" : "temporary"} processes`, function () {
    this.timeout(30_000);
    let interp: PythonInterpreter;
    beforeEach(() => {
      interp = new PythonInterpreter({ services: null, persistent, timeoutMs: 5_000 });
    });
    afterEach(() => interp.close());

    it("reports its mode (TorchRL's interpreter without service)", () => {
      expect(interp.services).to.equal(null);
      expect(interp.mode).to.equal(persistent ? "persistent" : "temporary");
    });

    it("a single block: 'Code block 1 executed successfully:\\n2\\n'", async () => {
      const out = await interp.run("Here is a python code to execute:\n```python\nprint(1 + 1)\n```<|im_end|>\n");
      expect(out.messages).to.deep.equal(["Code block 1 executed successfully:\n2\n"]);
      expect(out.results).to.have.length(1);
      expect(out.results[0]!.success).to.equal(true);
    });

    it("a reply with no block yields no message", async () => {
      const out = await interp.run("I will not run anything.\n```bash\nls\n```");
      expect(out.messages).to.deep.equal([]);
      expect(out.results).to.deep.equal([]);
    });

    it("an error block fails and the next block still runs", async () => {
      const out = await interp.run("```python\nraise ValueError('Test error')\n```\nthen\n```python\nprint('next')\n```");
      expect(out.messages).to.have.length(2);
      expect(out.messages[0]).to.match(/^Code block 1 failed:\n[\s\S]*ValueError: Test error\n$/);
      expect(out.messages[1]).to.equal("Code block 2 executed successfully:\nnext\n");
    });

    if (persistent) {
      it("state persists across runs (a=1 then a+=1) and reset clears it", async () => {
        await interp.run("```python\na = 1\n```", { sessionId: "env-0" });
        const two = await interp.run("```python\na += 1\nprint(a)\n```", { sessionId: "env-0" });
        expect(two.messages).to.deep.equal(["Code block 1 executed successfully:\n2\n"]);
        expect(await interp.reset("env-0")).to.equal(true);
        const gone = await interp.run("```python\nprint(a)\n```", { sessionId: "env-0" });
        expect(gone.messages[0]).to.match(/^Code block 1 failed:\n[\s\S]*NameError/);
      });

      it("each session has a process of its own (strict isolation)", async () => {
        const a = await interp.execute("import os\nprint(os.getpid())", { sessionId: "A" });
        const b = await interp.execute("import os\nprint(os.getpid())", { sessionId: "B" });
        expect(a.stdout).to.not.equal(b.stdout);
        expect(interp.processes).to.equal(2);
        // the default session, without sessionId
        await interp.run("```python\nd = 4\n```");
        expect((await interp.run("```python\nprint(d)\n```")).messages[0]).to.equal("Code block 1 executed successfully:\n4\n");
      });

      it("keeps at most maxProcesses processes, closing the least recently used", async () => {
        const small = new PythonInterpreter({ services: null, persistent: true, maxProcesses: 2 });
        try {
          const pid = async (s: string) => Number((await small.execute("import os\nv = 1\nprint(os.getpid())", { sessionId: s })).stdout);
          const p1 = await pid("s1");
          await pid("s2");
          await pid("s3");
          expect(small.processes).to.equal(2);
          await until(() => !isRunning(p1), 5_000, "the least recently used process to be closed");
          const back = await small.execute("print(v)", { sessionId: "s1" });
          expect(back.stateReset).to.equal(true);
          expect(back.resetReason).to.contain("maxProcesses");
        } finally {
          await small.close();
        }
      });
    } else {
      it("blocks do not share state, and no process outlives its block", async () => {
        const out = await interp.run("```python\na = 1\nimport os\nprint(os.getpid())\n```\n```python\nprint(a)\n```");
        expect(out.messages[1]).to.contain("NameError");
        expect(interp.processes).to.equal(0);
        const pid = Number(out.results[0]!.stdout);
        await until(() => !isRunning(pid), 5_000, "the temporary process to be gone");
      });
    }

    it("timeouts become failed blocks; the interpreter keeps working", async () => {
      const quick = new PythonInterpreter({ services: null, persistent, timeoutMs: 300 });
      try {
        const out = await quick.run("```python\nwhile True: pass\n```\n```python\nprint('ok')\n```");
        expect(out.results[0]!.timedOut).to.equal(true);
        expect(out.messages[0]).to.match(/^Code block 1 failed:\n[\s\S]*timed out after 300 ms/);
        expect(out.messages[1]).to.equal("Code block 2 executed successfully:\nok\n");
      } finally {
        await quick.close();
      }
    });

    it("close() is idempotent; later runs fail with ClosedError", async () => {
      await interp.run("```python\nprint(1)\n```");
      await Promise.all([interp.close(), interp.close()]);
      expect(await interp.run("```python\nprint(1)\n```").catch((e) => e)).to.be.instanceOf(ClosedError);
      expect(interp.processes).to.equal(0);
    });
  });
}
