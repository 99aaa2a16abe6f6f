import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { expect } from "chai";
import { unwrapReply } from "../../src/actor/index.ts";
import { startAgent, type Agent } from "../../src/agent/index.ts";
import type { ProcSpec } from "../../src/agent/protocol.ts";
import { connectBus, type BusConnection } from "../../src/connection/index.ts";
import { InvalidOptionsError, ModuleNotAllowedError } from "../../src/errors/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";
import { replicaPids } from "../helpers/replicas.ts";

const quiet = { stdout: { write: () => true }, stderr: process.stderr } as unknown as { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };
const FIXTURES = dirname(fileURLToPath(Counter.module!));
const AGENT_MAIN = fileURLToPath(new URL("../../src/agent/main.ts", import.meta.url));

/**
 * Whoever reaches an agent's subject can ask it to start a process; these tests play that
 * requester and show the agent only starts modules under its --allow roots.
 */
describe("agents: only modules under the allowed roots are spawned", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace("allow");
  const subjects = subjectsFor(ns);
  const agents: Agent[] = [];
  let services: Services;
  let conn: BusConnection;
  let tmp: string;

  const agent = async (hostId: string, allow?: string[]) => {
    const a = await startAgent({ servers: testUrl(), namespace: ns, hostId, output: quiet, allow });
    agents.push(a);
    return a;
  };

  const spec = (moduleUrl: string, extra: Partial<ProcSpec> = {}): ProcSpec => ({
    namespace: ns,
    service: "evil",
    controllerId: "c1",
    groupId: "g1",
    procId: `p${Math.random().toString(16).slice(2)}`,
    rank: 0,
    size: 1,
    moduleUrl,
    exportName: "Counter",
    args: [],
    actor: { maxConcurrency: 1, maxPending: 10, timeoutMs: 5_000, drainTimeoutMs: 100 },
    queueGroup: false,
    gpu: false,
    env: {},
    label: "evil#0.0",
    ...extra,
  });

  /** Sends a raw spawn request, as anyone on the account could, and returns the rebuilt error. */
  const spawnRefusal = async (hostId: string, s: ProcSpec): Promise<Error> => {
    const bytes = await conn.transport.request(subjects.agent(hostId), conn.codec.encode({ op: "spawn", procs: [s], startTimeoutMs: 10_000 }), 10_000);
    try {
      unwrapReply(conn.codec, bytes);
    } catch (err) {
      return err as Error;
    }
    throw new Error(`agent ${hostId} spawned ${s.moduleUrl}`);
  };

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "actorbus-allow-"));
    services = await getServices({ namespace: ns, servers: testUrl() });
    conn = await connectBus({ servers: testUrl(), devServer: "never" });
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.stop()));
  });
  after(async () => {
    await services?.close();
    await conn?.close();
    rmSync(tmp, { recursive: true, force: true });
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  it("defaults to the working directory, so the project's own services start", async () => {
    const a = await agent("cwd");
    expect(a.allowedRoots).to.have.length(1);
    expect(FIXTURES.startsWith(a.allowedRoots[0]!)).to.equal(true);
    const counter = await Counter.options({ services, meshName: "allowed" }).asService(5);
    try {
      expect(await counter.incr(2)).to.equal(7);
      expect(a.processes()).to.have.length(1);
    } finally {
      await counter.shutdown();
    }
  });

  it("refuses a service whose module is outside --allow; the caller gets ModuleNotAllowedError and nothing runs", async () => {
    const a = await agent("narrow", [tmp]);
    try {
      await Counter.options({ services, meshName: "refused" }).asService();
      expect.fail("should have been refused");
    } catch (err) {
      expect(err).to.be.instanceOf(ModuleNotAllowedError);
      const e = err as ModuleNotAllowedError;
      expect(e.code).to.equal("MODULE_NOT_ALLOWED");
      expect(e.retryable).to.equal(false);
      expect(e.message).to.contain("outside this agent's allowed roots").and.contain("--allow");
    }
    expect(a.processes()).to.deep.equal([]);
    expect(replicaPids(ns)).to.deep.equal([]);
    expect(await services.list()).to.deep.equal([]);
  });

  it("refuses data:, http: and bare modules, traversal and symlinks out of the root, missing files, and code-loading env", async () => {
    const root = join(tmp, "root");
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, "inside.ts"), "export class Counter {}\n");
    symlinkSync(FIXTURES, join(root, "link-out"));
    await agent("strict", [root]);
    const inside = pathToFileURL(join(root, "inside.ts")).href;
    const cases: [ProcSpec, RegExp][] = [
      [spec("data:text/javascript,process.exit(9)"), /only file: modules/],
      [spec("http://example.com/x.js"), /only file: modules/],
      [spec("child_process"), /only file: modules/],
      [spec(`${pathToFileURL(root).href}/../../../${FIXTURES}/counter.ts`), /outside this agent's allowed roots|does not exist/],
      [spec(pathToFileURL(join(root, "link-out", "counter.ts")).href), /outside this agent's allowed roots/],
      [spec(pathToFileURL(join(root, "missing.ts")).href), /does not exist on this host/],
      [spec(inside, { env: { NODE_OPTIONS: `--import ${Counter.module}` } }), /NODE_OPTIONS/],
      [spec(inside, { env: { LD_PRELOAD: "/tmp/x.so", PYTHONPATH: "/tmp" } }), /LD_PRELOAD, PYTHONPATH/],
    ];
    for (const [s, why] of cases) {
      const err = await spawnRefusal("strict", s);
      expect(err, s.moduleUrl).to.be.instanceOf(ModuleNotAllowedError);
      expect(err.message, s.moduleUrl).to.match(why);
    }
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  it("validates --allow: a missing directory or a file is refused at start, naming the fix", async () => {
    for (const [allow, why] of [
      [[join(tmp, "nope")], /does not exist: create it or pass an existing directory to --allow/],
      [[fileURLToPath(Counter.module!)], /is not a directory/],
    ] as const) {
      try {
        await agent("bad", [...allow]);
        expect.fail("should have thrown");
      } catch (err) {
        expect(err).to.be.instanceOf(InvalidOptionsError);
        expect((err as Error).message).to.match(why);
      }
    }
    const cli = spawnSync(process.execPath, ["--import", "tsx", AGENT_MAIN, "--servers", testUrl(), "--namespace", ns, "--host-id", "cli", "--allow", join(tmp, "nope")], { encoding: "utf8", timeout: 20_000 });
    expect(cli.status).to.equal(1);
    expect(cli.stderr).to.match(/InvalidOptionsError \[INVALID_OPTIONS\]: agent allow root .*nope does not exist/);
  });
});
