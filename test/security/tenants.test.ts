import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { expect } from "chai";
import { createHandle } from "../../src/actor/index.ts";
import { connectBus, startNatsServer, type BusConnection, type ConnectionOptions, type NatsServerProcess } from "../../src/connection/index.ts";
import { PermissionError } from "../../src/errors/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { until } from "../helpers/nats.ts";
import { replicaPids, startAgentProcess, stopAllAgents } from "../helpers/replicas.ts";

const NATS_CONF = fileURLToPath(new URL("../../nats.conf", import.meta.url));

/** The checked-in nats.conf, minus what would clash with other servers (fixed ports, /data). */
function tenantConfig(): string {
  return readFileSync(NATS_CONF, "utf8")
    .split("\n")
    .filter((l) => !/^\s*(listen|http|store_dir)\s*:/.test(l))
    .join("\n");
}

class Echo {
  async echo(x: unknown) {
    return x;
  }
}

const TEAM_A = { user: "team_a", pass: "change-me-a", inboxPrefix: "_INBOX_team_a" };
const TEAM_B = { user: "team_b", pass: "change-me-b", inboxPrefix: "_INBOX_team_b" };

/** Expects `p` to fail with PermissionError quickly: a refusal, not a deadline running out. */
async function refused(p: Promise<unknown>, what: string, subject: RegExp): Promise<PermissionError> {
  const t0 = Date.now();
  try {
    await p;
  } catch (err) {
    expect(err, what).to.be.instanceOf(PermissionError);
    expect((err as Error).message, what).to.match(subject);
    expect(Date.now() - t0, `${what} took too long: a hang is not a refusal`).to.be.below(3_000);
    return err as PermissionError;
  }
  throw new Error(`${what} was allowed`);
}

describe("security: nats.conf locks each tenant into its namespace", function () {
  this.timeout(60_000);
  let server: NatsServerProcess;
  const open: { close(): Promise<void> }[] = [];
  const services = async (creds: ConnectionOptions, namespace: string): Promise<Services> => {
    const s = await getServices({ servers: server.url, namespace, devServer: "never", timeoutMs: 5_000, ...creds });
    open.push(s);
    return s;
  };
  const bus = async (creds: ConnectionOptions): Promise<BusConnection> => {
    const c = await connectBus({ servers: server.url, devServer: "never", ...creds });
    open.push(c);
    return c;
  };
  let teamA: Services;

  before(async () => {
    server = await startNatsServer({ config: tenantConfig() });
    teamA = await services(TEAM_A, "team_a");
    await teamA.register("echo", Echo);
  });
  after(async () => {
    await stopAllAgents();
    for (const c of open.reverse()) await c.close().catch(() => {});
    await server?.stop();
  });

  it("team_a registers, lists and calls in its own namespace, from another connection too", async () => {
    const other = await services(TEAM_A, "team_a");
    expect(await other.list()).to.deep.equal(["echo"]);
    const echo = await other.get<Echo>("echo");
    expect(await echo.echo({ hi: [1, 2] })).to.deep.equal({ hi: [1, 2] });
  });

  it("team_a's replicas on a team_a agent connect with the tenant's user and inbox prefix", async () => {
    await startAgentProcess(server.url, "team_a", "tenant-host", ["--inbox-prefix", TEAM_A.inboxPrefix], {
      NATS_USER: TEAM_A.user,
      NATS_PASSWORD: TEAM_A.pass,
    });
    const counter = await Counter.options({ services: teamA, meshName: "counter", placement: "agents" }).asService(1);
    try {
      expect(await counter.incr(2)).to.equal(3);
      expect(await teamA.list()).to.deep.equal(["counter", "echo"]);
    } finally {
      await counter.shutdown();
    }
    await stopAllAgents();
    expect(replicaPids("team_a")).to.deep.equal([]);
  });

  it("team_b can neither list, register in, nor open team_a's registry", async () => {
    await refused(services(TEAM_B, "team_a"), "team_b opening team_a's registry", /actorbus_team_a/);
    // Its own namespace works, so the refusals above are about team_a, not broken credentials.
    const own = await services(TEAM_B, "team_b");
    await own.register("mine", Echo);
    expect(await own.list()).to.deep.equal(["mine"]);
    expect(await teamA.list()).to.deep.equal(["echo"]);
  });

  it("team_b cannot call team_a's service even knowing its subject", async () => {
    const conn = await bus(TEAM_B);
    const handle = createHandle<Echo>({ conn, subjects: subjectsFor("team_a"), name: "echo", timeoutMs: 10_000 });
    await refused(handle.echo("x"), "team_b calling team_a's echo", /ab\.team_a\.svc\.echo/);
    // The connection survives the refusal and keeps working in its own namespace.
    const own = await services(TEAM_B, "team_b");
    expect(await (await own.get<Echo>("mine")).echo(7)).to.equal(7);
  });

  it("team_b cannot eavesdrop on team_a's calls or replies, nor use the shared _INBOX", async () => {
    const nc: NatsConnection = await connect({ servers: server.url, user: TEAM_B.user, pass: TEAM_B.pass, inboxPrefix: TEAM_B.inboxPrefix });
    open.push({ close: () => nc.close() });
    const violations: string[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === "error") violations.push(String((s as { error?: Error }).error?.message));
    })();
    for (const subject of ["ab.team_a.>", "_INBOX_team_a.>", "_INBOX.>", "$KV.actorbus_team_a.>"]) nc.subscribe(subject);
    await nc.flush();
    await until(() => violations.length >= 4, 5_000, "four subscription violations");
    for (const subject of ["ab.team_a.>", "_INBOX_team_a.>", "_INBOX.>", "$KV.actorbus_team_a.>"]) {
      expect(violations.join("\n")).to.contain(`Subscription to "${subject}"`);
    }
    // A team_b client that forgets its inbox prefix is told what to allow, not left hanging.
    await refused(bus({ user: TEAM_B.user, pass: TEAM_B.pass }).then((c) => createHandle<Echo>({ conn: c, subjects: subjectsFor("team_b"), name: "mine", timeoutMs: 10_000 }).echo(1)), "team_b with the default _INBOX", /_INBOX/);
  });

  it("anonymous connections land in the DEV account, which sees neither tenant", async () => {
    const dev = await services({}, "team_a");
    expect(await dev.list()).to.deep.equal([]);
    await dev.register("devsvc", Echo);
    expect(await teamA.list()).to.deep.equal(["echo"]);
  });
});
