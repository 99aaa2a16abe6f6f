import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { freePort } from "../../src/connection/index.ts";
import { getServices, NoServerError } from "../../src/index.ts";
import { CLI_ARGS } from "../helpers/cli.ts";

const INDEX = new URL("../../src/index.ts", import.meta.url).href;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from the first line on stdout or stderr to the exit. */
  exitAfterOutputMs: number;
}

/** Runs node; kills it (and fails) if it has not exited `graceMs` after it printed something. */
function runNode(args: string[], env: NodeJS.ProcessEnv, graceMs: number, children: Set<ChildProcess>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    let stdout = "";
    let stderr = "";
    let firstOutputAt: number | undefined;
    let timer: NodeJS.Timeout | undefined;
    const onOutput = () => {
      if (firstOutputAt !== undefined) return;
      firstOutputAt = Date.now();
      timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`node ${args.join(" ")} still running ${graceMs} ms after it printed:\n${stdout}${stderr}`));
      }, graceMs);
    };
    child.stdout!.on("data", (d: Buffer) => ((stdout += d), onOutput()));
    child.stderr!.on("data", (d: Buffer) => ((stderr += d), onOutput()));
    child.once("exit", (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr, exitAfterOutputMs: Date.now() - (firstOutputAt ?? Date.now()) });
    });
  });
}

describe("an unreachable or wrong NATS URL", function () {
  this.timeout(60_000);
  const children = new Set<ChildProcess>();
  let http: Server;
  let httpUrl: string;
  const env = () => {
    const e: NodeJS.ProcessEnv = { ...process.env };
    delete e.NATS_URL;
    return e;
  };

  before(async () => {
    // Accepts TCP and never says a word first, as HTTP servers do: nats.js waits for INFO.
    http = createServer((_req, res) => res.end("not NATS\n"));
    await new Promise<void>((r) => http.listen(0, "127.0.0.1", () => r()));
    httpUrl = `nats://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const c of children) c.kill("SIGKILL");
    http.closeAllConnections();
    await new Promise((r) => http.close(r));
  });

  it("getServices() against an HTTP port throws NoServerError, and the process then exits by itself", async () => {
    const script = `
      import { getServices } from ${JSON.stringify(INDEX)};
      try {
        await getServices({ servers: ${JSON.stringify(httpUrl)}, connectTimeoutMs: 1000 });
        console.log("connected?");
      } catch (err) {
        console.log(JSON.stringify({ name: err.name, code: err.code, message: err.message }));
      }`;
    const run = await runNode(["--import", "tsx", "--input-type=module", "-e", script], env(), 3_000, children);
    expect(run.stderr).to.equal("");
    const printed = JSON.parse(run.stdout.trim());
    expect(printed).to.include({ name: "NoServerError", code: "NO_SERVER" });
    expect(printed.message).to.contain(httpUrl).and.to.contain("no NATS greeting within 1000 ms");
    expect(run.code).to.equal(0);
  });

  it("the CLI (NATS_URL or --servers) prints NoServerError once and exits 1 by itself", async () => {
    for (const [args, extraEnv] of [
      [["ls"], { NATS_URL: httpUrl }],
      [["ls", "--servers", httpUrl], {}],
    ] as const) {
      const run = await runNode([...CLI_ARGS, ...args], { ...env(), ...extraEnv }, 3_000, children);
      expect(run.code, run.stderr).to.equal(1);
      expect(run.stderr.trim().split("\n")).to.have.length(1);
      expect(run.stderr).to.match(/^NoServerError \[NO_SERVER\]: cannot reach a NATS server at nats:\/\/127\.0\.0\.1:\d+/);
      expect(run.stderr).to.contain(httpUrl);
    }
  });

  describe("an explicit URL that nothing answers", () => {
    let saved: string | undefined;
    beforeEach(() => {
      saved = process.env.NATS_URL;
    });
    afterEach(() => {
      if (saved === undefined) delete process.env.NATS_URL;
      else process.env.NATS_URL = saved;
    });

    it("from NATS_URL: names the (redacted) URL and says that unsetting NATS_URL starts a private server", async () => {
      const port = await freePort();
      process.env.NATS_URL = `nats://alice:s3cret@127.0.0.1:${port}`;
      const err = await getServices({ maxReconnectAttempts: 0 }).catch((e) => e);
      expect(err).to.be.instanceOf(NoServerError);
      expect(err.message).to.contain(`nats://alice:***@127.0.0.1:${port}`).and.not.contain("s3cret");
      expect(err.message).to.contain("given by NATS_URL");
      expect(err.message).to.contain("connection refused");
      expect(err.message).to.contain("unset NATS_URL and actorbus starts a private nats-server");
      expect(err.message).to.contain('devServer: "auto"');
      expect(err.details).to.deep.include({ source: "NATS_URL", urls: [`nats://alice:***@127.0.0.1:${port}`] });
    });

    it("from `servers`: says to omit it", async () => {
      delete process.env.NATS_URL;
      const port = await freePort();
      const err = await getServices({ servers: `nats://127.0.0.1:${port}`, maxReconnectAttempts: 0 }).catch((e) => e);
      expect(err).to.be.instanceOf(NoServerError);
      expect(err.message).to.contain(`nats://127.0.0.1:${port}, given by servers`);
      expect(err.message).to.contain("omit `servers` (and leave NATS_URL unset) and actorbus starts a private nats-server");
    });

    it('with devServer: "never" (as the CLI runs): points at the default server instead', async () => {
      const port = await freePort();
      process.env.NATS_URL = `nats://127.0.0.1:${port}`;
      const err = await getServices({ devServer: "never", maxReconnectAttempts: 0 }).catch((e) => e);
      expect(err).to.be.instanceOf(NoServerError);
      expect(err.message).to.contain("unset NATS_URL to use a server on 127.0.0.1:4222").and.not.contain("private");
    });
  });
});
