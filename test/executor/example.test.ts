import { expect } from "chai";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";

const EXAMPLE = fileURLToPath(new URL("../../examples/executor/python-executor.ts", import.meta.url));

for (const backend of ["nats", "local"]) {
  describe(`examples/executor/python-executor.ts (${backend})`, function () {
    this.timeout(60_000);
    it("registers the executor, runs eight environments' blocks on four interpreters, survives a runaway", async () => {
      const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", EXAMPLE], {
        env: { ...process.env, NATS_URL: testUrl(), ACTORBUS_EXAMPLE_BACKEND: backend, ACTORBUS_EXAMPLE_NAMESPACE: uniqueNamespace("pyex") },
      });
      expect(stdout).to.contain('[direct] success=true stdout="Result: 30\\n"');
      for (let i = 0; i < 8; i++) {
        const total = (i * (i + 1)) / 2;
        expect(stdout).to.contain(`[env-${i}] "Code block 1 executed successfully:\\nenv ${i}: total=${total}\\n"`);
      }
      expect(stdout).to.contain(`[env-0] second block: "ValueError: invalid literal for int() with base 10: 'not a number'"`);
      expect(stdout).to.contain("[env-0] runaway: timedOut=true stateReset=true");
      expect(stdout).to.contain('[env-1] after env-0\'s timeout: "Code block 1 executed successfully:\\n1 1\\n"');
      expect(stdout).to.contain("[env-1] after reset: NameError (state cleared)");
      expect(stdout).to.match(/\[stats\] 4 interpreters for 8 environments, \d+ sessions, \d+ executions, 1 timeout, 1 restart/);
      expect(stdout).to.contain("[main] done");
    });
  });
}
