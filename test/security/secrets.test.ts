import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { expect } from "chai";
import { connectBus, startNatsServer, type NatsServerProcess } from "../../src/connection/index.ts";
import { errorToWire, PermissionError } from "../../src/errors/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { uniqueNamespace } from "../helpers/nats.ts";
import { replicaPids, startAgentProcess, stopAllAgents } from "../helpers/replicas.ts";
import { CLI_ARGS } from "../helpers/cli.ts";

const run = promisify(execFile);

/** A password no other text contains, so finding it anywhere is a leak. */
const PASSWORD = `pw-${randomBytes(12).toString("hex")}`;
const WRONG = `wrong-${randomBytes(12).toString("hex")}`;

class Echo {
  async echo(x: unknown) {
    return x;
  }
}

describe("security: secrets stay out of errors, the registry, status and replica processes", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace("sec");
  let server: NatsServerProcess;
  let services: Services;

  before(async () => {
    server = await startNatsServer({ config: `authorization { users: [{ user: alice, password: "${PASSWORD}" }] }\n` });
    services = await getServices({ servers: server.url, namespace: ns, user: "alice", pass: PASSWORD, devServer: "never" });
  });
  after(async () => {
    await stopAllAgents();
    await services?.close();
    await server?.stop();
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  it("replicas spawned by a caller with programmatic credentials connect, and their argv and env hold no secret", async () => {
    expect(process.env.NATS_PASSWORD, "the test must not lean on the environment").to.equal(undefined);
    const svc = await Counter.options({ services, numReplicas: 2, placement: "local" }).asService(0);
    try {
      const pids = new Set<number>();
      for (let i = 0; i < 6 && pids.size < 2; i++) pids.add((await svc.whoami()).pid);
      expect(pids.size).to.equal(2);
      for (const pid of pids) {
        const environ = readFileSync(`/proc/${pid}/environ`, "utf8");
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
        expect(environ).to.not.contain(PASSWORD);
        expect(cmdline).to.not.contain(PASSWORD);
      }
    } finally {
      await svc.shutdown();
    }
  });

  it("an agent started with NATS_USER/NATS_PASSWORD hands them to its replicas over IPC, not their environment", async () => {
    const agent = await startAgentProcess(server.url, ns, "secret-host", [], { NATS_USER: "alice", NATS_PASSWORD: PASSWORD });
    const svc = await Counter.options({ services, meshName: "on-agent", placement: "agents" }).asService(0);
    try {
      const { pid, host } = await svc.whoami();
      expect(host).to.equal("secret-host");
      expect(readFileSync(`/proc/${pid}/environ`, "utf8")).to.not.contain(PASSWORD).and.not.contain("NATS_PASSWORD");
      expect(readFileSync(`/proc/${pid}/cmdline`, "utf8")).to.not.contain(PASSWORD);
      expect(agent.output.join("\n")).to.not.contain(PASSWORD);
    } finally {
      await svc.shutdown();
      await stopAllAgents();
    }
  });

  it("registry records and `actorbus ls/status --json` never contain the password", async () => {
    await services.register("echo", Echo);
    const svc = await Counter.options({ services, meshName: "counted", placement: "local" }).asService(0);
    try {
      const nc = await connect({ servers: server.url, user: "alice", pass: PASSWORD });
      try {
        const kv = await new Kvm(nc).open(subjectsFor(ns).bucket);
        const keys: string[] = [];
        for await (const k of await kv.keys()) keys.push(k);
        expect(keys.length).to.be.greaterThan(1);
        for (const k of keys) expect(new TextDecoder().decode((await kv.get(k))!.value), k).to.not.contain(PASSWORD);
      } finally {
        await nc.close();
      }
      // Not spawnSync: the service's controller lives in this process and must answer the CLI.
      for (const cmd of [["ls"], ["status", "--json"], ["status"]]) {
        const r = await run(process.execPath, [...CLI_ARGS, ...cmd, "--servers", server.url, "--namespace", ns], {
          encoding: "utf8",
          timeout: 20_000,
          env: { ...process.env, NATS_USER: "alice", NATS_PASSWORD: PASSWORD },
        });
        expect(r.stdout, cmd.join(" ")).to.contain("counted").and.not.match(/unreachable/);
        expect(r.stdout + r.stderr).to.not.contain(PASSWORD);
      }
    } finally {
      await svc.shutdown();
      await services.remove("echo");
    }
  });

  it("a refused login says so without repeating the password, from options or from the URL", async () => {
    const port = new URL(server.url).port;
    for (const opts of [
      { servers: server.url, user: "alice", pass: WRONG },
      { servers: `nats://alice:${WRONG}@127.0.0.1:${port}` },
    ]) {
      try {
        await connectBus({ ...opts, devServer: "never", maxReconnectAttempts: 0 });
        expect.fail("should have been refused");
      } catch (err) {
        expect(err).to.be.instanceOf(PermissionError);
        const shown = `${(err as Error).message}\n${(err as Error).stack}\n${JSON.stringify(errorToWire(err))}`;
        expect(shown).to.match(/refused the credentials/);
        expect(shown).to.not.contain(WRONG);
      }
    }
  });
});
