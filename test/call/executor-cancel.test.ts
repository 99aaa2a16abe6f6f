import { expect } from "chai";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { withOptions } from "../../src/call/index.ts";
import { CallTimeoutError, CancelledError } from "../../src/errors/index.ts";
import { PythonExecutorService } from "../../src/executor/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";

describe("cancelling Python executions", function () {
  this.timeout(60_000);
  let services: Services;

  before(async () => {
    services = await getServices({ servers: testUrl(), namespace: uniqueNamespace("execcancel") });
    await services.registerWithOptions("py", PythonExecutorService, { maxConcurrency: 8 }, { poolSize: 1, timeoutMs: 30_000, sandbox: false });
  });
  after(() => services.close());

  it("a cancelled running execution kills and replaces its interpreter; a queued one never runs", async () => {
    const py = await services.get<PythonExecutorService>("py");
    await py.execute("x = 1");
    const before = await py.stats();
    const running = new AbortController();
    const queued = new AbortController();
    const slow = withOptions(py, { signal: running.signal }).execute("import time\ntime.sleep(30)");
    await new Promise((r) => setTimeout(r, 300));
    // Waits behind the sleeper (one interpreter): cancelled before it gets one.
    const dir = mkdtempSync(join(tmpdir(), "actorbus-cancel-"));
    const markerFile = join(dir, "ran");
    const marker = withOptions(py, { signal: queued.signal }).execute(`open(${JSON.stringify(markerFile)}, 'w').write('ran')`);
    await new Promise((r) => setTimeout(r, 100));
    queued.abort();
    expect(await marker.catch((e) => e)).to.be.instanceOf(CancelledError);
    const t0 = Date.now();
    running.abort();
    expect(await slow.catch((e) => e)).to.be.instanceOf(CancelledError);
    expect(Date.now() - t0).to.be.below(100);
    // The interpreter was killed (a sleep(30) would still hold it) and replaced.
    await until(async () => (await py.stats()).restarts > before.restarts, 10_000, "the interpreter to be replaced");
    const after = await py.execute("print('alive')");
    expect(after.stdout.trim()).to.equal("alive");
    expect(existsSync(markerFile), "the cancelled queued execution never ran").to.equal(false);
    rmSync(dir, { recursive: true, force: true });
  });

  it("the call's deadline kills a running execution (before the executor's own timeoutMs) and replaces its interpreter", async () => {
    const py = await services.get<PythonExecutorService>("py");
    await py.execute("x = 1");
    const before = await py.stats();
    const t0 = Date.now();
    expect(await withOptions(py, { timeoutMs: 300 }).execute("import time\ntime.sleep(30)").catch((e) => e)).to.be.instanceOf(CallTimeoutError);
    // The sleeper was killed at the deadline (timeoutMs of the service: 30 s), not left running.
    await until(async () => (await py.stats()).restarts > before.restarts, 5_000, "the interpreter to be replaced");
    expect(Date.now() - t0).to.be.below(5_000);
    expect((await py.execute("print('alive')")).stdout.trim()).to.equal("alive");
  });
});
