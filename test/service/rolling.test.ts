import { expect } from "chai";
import { withOptions } from "../../src/call/index.ts";
import { InvalidOptionsError, RemoteError } from "../../src/errors/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { rolling, RollingUpdateError, VersionUnavailableError, type ServiceProxy } from "../../src/service/index.ts";
import type { ServiceHandle } from "../../src/actor/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { validate } from "../helpers/json-schema.ts";
import { loadSchema, replicaPids } from "../helpers/replicas.ts";
import { Policy } from "../fixtures/replicas/policy.ts";

/** Callers that keep calling until stopped: how many calls succeeded, and every failure. */
function steadyLoad(lanes: number, call: () => Promise<unknown>) {
  let stopped = false;
  let ok = 0;
  const errors: unknown[] = [];
  const done = Promise.all(
    Array.from({ length: lanes }, async () => {
      while (!stopped) {
        try {
          await call();
          ok++;
        } catch (err) {
          errors.push(err);
        }
      }
    }),
  );
  return {
    get ok() {
      return ok;
    },
    errors,
    async stop() {
      stopped = true;
      await done;
    },
  };
}

/** The most update calls that ran at once, from their [start, end] on the replicas' clock (one machine). */
function mostAtOnce(runs: { start: number; end: number }[]): number {
  return Math.max(...runs.map((a) => runs.filter((b) => b.start <= a.start && a.start < b.end).length));
}

describe("services: rolling updates and version-bounded routing", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace("roll");
  let svc: ServiceProxy<Policy>;
  let services: Services;
  let viaRegistry: ServiceHandle<Policy>;

  before(async () => {
    // 8 calls at once per replica: without the roll taking a replica out of routing, calls would
    // run beside its update and see it half done.
    svc = await Policy.options({ numReplicas: 3, maxConcurrency: 8, servers: testUrl(), namespace: ns }).asService();
    services = await getServices({ namespace: ns, servers: testUrl() });
    viaRegistry = await services.get<Policy>("policy");
  });

  after(async () => {
    await services?.close();
    await svc?.shutdown();
    expect(replicaPids(ns), "replica processes after shutdown").to.deep.equal([]);
  });

  it("replicas report the version their instance starts at", async () => {
    await until(() => svc.status().replicas.every((r) => r.version === 0), 10_000, "versions reported");
    expect(svc.status().replicas.map((r) => r.updating)).to.deep.equal([false, false, false]);
    expect(svc.status().rolling).to.equal(null);
  });

  it("updates every replica in turn while calls (routed, relayed, in a session) keep succeeding and never see one mid-update", async () => {
    const routed = steadyLoad(4, () => svc.act(1, 2));
    const relayed = steadyLoad(2, () => viaRegistry.act(1, 2));
    const inSession = svc.session();
    const sessionLoad = steadyLoad(1, () => inSession.act(1, 2));
    await until(() => routed.ok > 20 && relayed.ok > 10 && sessionLoad.ok > 5, 10_000, "load running");

    // While the roll runs, the status shows it, one replica at a time.
    const updatingSeen: number[] = [];
    const rollingSeen = new Set<string>();
    const watch = setInterval(() => {
      const st = svc.status();
      updatingSeen.push(st.replicas.filter((r) => r.updating).length);
      if (st.rolling) rollingSeen.add(`${st.rolling.method} ${st.rolling.maxUnavailable}`);
    }, 5);
    const before = { routed: routed.ok, relayed: relayed.ok, session: sessionLoad.ok };
    const results = await withOptions(svc.loadWeights.rolling, { timeoutMs: 20_000 })([1, 2, 3], 1, 60);
    clearInterval(watch);
    const during = { routed: routed.ok - before.routed, relayed: relayed.ok - before.relayed, session: sessionLoad.ok - before.session };
    await Promise.all([routed.stop(), relayed.stop(), sessionLoad.stop()]);
    await inSession[Symbol.asyncDispose]();

    expect([...routed.errors, ...relayed.errors, ...sessionLoad.errors].map(String)).to.deep.equal([]);
    expect(during.routed, "routed calls during the roll").to.be.above(0);
    expect(during.relayed, "registry calls during the roll").to.be.above(0);
    expect(results.map((r) => r.version)).to.deep.equal([1, 1, 1]);
    expect(new Set(results.map((r) => r.pid)).size).to.equal(3);
    expect(results.map((r) => r.pid)).to.deep.equal(svc.status().replicas.map((r) => r.pids[0]));
    expect(mostAtOnce(results), "maxUnavailable 1 (default)").to.equal(1);
    expect(Math.max(...updatingSeen)).to.equal(1);
    expect([...rollingSeen]).to.deep.equal(["loadWeights 1"]);
    const st = svc.status();
    expect(st.replicas.map((r) => r.version)).to.deep.equal([1, 1, 1]);
    expect(st.replicas.map((r) => r.updating)).to.deep.equal([false, false, false]);
    expect(st.rolling).to.equal(null);
  });

  it("maxUnavailable: 2 updates two replicas at once, never more", async () => {
    const load = steadyLoad(4, () => svc.act(1, 2));
    const results = await svc.loadWeights.rolling.with({ maxUnavailable: 2 })([2], 2, 60);
    await load.stop();
    expect(load.errors.map(String)).to.deep.equal([]);
    expect(results.map((r) => r.version)).to.deep.equal([2, 2, 2]);
    expect(mostAtOnce(results)).to.equal(2);
    // Options stack: withOptions on the configured form keeps its maxUnavailable.
    const configured = withOptions(svc.loadWeights.rolling.with({ maxUnavailable: 3 }), { timeoutMs: 20_000 });
    expect(mostAtOnce(await configured([2], 2, 60))).to.equal(3);
  });

  it("minVersion waits for a replica at that version, then succeeds (proxy and registry handle)", async () => {
    const fromProxy = withOptions(svc, { minVersion: 3, timeoutMs: 20_000 }).act();
    const fromRegistry = withOptions(viaRegistry, { minVersion: 3, timeoutMs: 20_000 }).act();
    let settled = false;
    void Promise.allSettled([fromProxy, fromRegistry]).then(() => (settled = true));
    // No replica is at 3 yet: both wait (calls without minVersion do not).
    expect((await svc.act()).version).to.equal(2);
    expect(settled).to.equal(false);
    const results = await svc.loadWeights.rolling([3], 3, 60);
    const [a, b] = await Promise.all([fromProxy, fromRegistry]);
    expect(a.version).to.equal(3);
    expect(b.version).to.equal(3);
    // Both went to the first replica updated, back in routing while the others were still at 2.
    expect(a.pid).to.equal(results[0]!.pid);
    expect(b.pid).to.equal(results[0]!.pid);
    // Satisfied at once now, and a lower bound takes any replica.
    expect((await withOptions(viaRegistry, { minVersion: 3 }).act()).version).to.equal(3);
    expect((await withOptions(svc, { minVersion: 1 }).whoami()).version).to.equal(3);
  });

  it("minVersion that no replica reaches fails at the deadline with a retryable VersionUnavailableError naming the versions", async () => {
    for (const h of [svc, viaRegistry] as const) {
      const t0 = Date.now();
      const err = await withOptions(h as ServiceHandle<Policy>, { minVersion: 99, timeoutMs: 400 })
        .act()
        .catch((e: unknown) => e);
      const ms = Date.now() - t0;
      expect(err, String(err)).to.be.instanceOf(VersionUnavailableError);
      const e = err as VersionUnavailableError;
      expect(e.code).to.equal("VERSION_UNAVAILABLE");
      expect(e.retryable).to.equal(true);
      expect(e.details).to.deep.include({ service: "policy", minVersion: 99, versions: [3, 3, 3] });
      expect(e.message).to.match(/version 99/).and.to.match(/v3/);
      expect(ms).to.be.within(300, 2_000);
    }
  });

  it("status, $SRV.STATS and actorbus status report the versions", async () => {
    const st = svc.status();
    expect(st.replicas.map((r) => r.version)).to.deep.equal([3, 3, 3]);
    const reply = await services.connection.nc!.request(`$SRV.STATS.policy.${st.controllerId}`, new Uint8Array(0), { timeout: 2_000 });
    const stats = JSON.parse(new TextDecoder().decode(reply.data));
    expect(stats.metadata).to.include({ replica_versions: "3,3,3", min_version: "3" });
    expect(validate(loadSchema("stats_response"), stats)).to.deep.equal([]);
    const { statusCommand } = await import("../../src/cli/status.ts");
    const table = (await statusCommand(["--servers", testUrl(), "--namespace", ns])).split("\n");
    expect(table[0]).to.match(/\bVERSION\b/);
    expect(table.filter((l) => l.startsWith("policy ")).map((l) => l.split(/\s+/)[5])).to.deep.equal(["3", "3", "3"]);
  });

  it("a failing update stops the roll with RollingUpdateError naming the replicas updated; calls keep succeeding", async () => {
    const pids = svc.status().replicas.map((r) => r.pids[0]!);
    const load = steadyLoad(4, () => svc.act(1, 2));
    const err = await svc.loadWeights
      .rolling([4], 4, 30, pids[1]!)
      .then(() => undefined)
      .catch((e: unknown) => e);
    await load.stop();
    expect(load.errors.map(String)).to.deep.equal([]);
    expect(err).to.be.instanceOf(RollingUpdateError);
    const e = err as RollingUpdateError;
    expect(e.code).to.equal("ROLLING_UPDATE");
    expect(e.retryable).to.equal(false);
    expect(e.details).to.deep.include({ service: "policy", method: "loadWeights", updated: [0], failed: 1, notUpdated: [1, 2] });
    expect(e.cause).to.be.instanceOf(RemoteError);
    expect((e.cause as Error).message).to.match(/do not fit/);
    expect(e.message).to.match(/stopped at replica 1/);
    // The failed replica is back in routing at the version it reports; replica 2 was never called.
    const st = svc.status();
    expect(st.replicas.map((r) => r.version)).to.deep.equal([4, 3, 3]);
    expect(st.replicas.map((r) => r.updating)).to.deep.equal([false, false, false]);
    expect((await withOptions(svc, { minVersion: 4 }).act()).pid).to.equal(pids[0]);
  });

  it("a replica that restarts comes back at its constructor's version; minVersion keeps calls off it until the next roll", async () => {
    const before = svc.status().replicas;
    expect(before.map((r) => r.version)).to.deep.equal([4, 3, 3]);
    const killed = before[1]!.pids[0]!;
    process.kill(killed, "SIGKILL");
    await until(() => {
      const r = svc.status().replicas[1]!;
      return r.state === "healthy" && r.pids[0] !== killed && r.version === 0;
    }, 20_000, "replica 1 restarted and reporting");
    const pids = svc.status().replicas.map((r) => r.pids[0]!);
    const served = await Promise.all(Array.from({ length: 12 }, () => withOptions(svc, { minVersion: 3 }).act()));
    expect(served.every((r) => r.version >= 3)).to.equal(true);
    expect(served.map((r) => r.pid)).to.not.include(pids[1]);
    const results = await svc.loadWeights.rolling([5], 5, 10);
    expect(results.map((r) => r.version)).to.deep.equal([5, 5, 5]);
    expect(svc.status().replicas.map((r) => r.version)).to.deep.equal([5, 5, 5]);
  });

  it("rolls through a registry handle (the forwarder relays the bytes) and through rolling(proxy)", async () => {
    const load = steadyLoad(3, () => svc.act(1, 2));
    const relayedLoad = steadyLoad(2, () => viaRegistry.act(1, 2));
    const results = await rolling(viaRegistry).loadWeights([6], 6, 60);
    const wide = await rolling(withOptions(viaRegistry, { timeoutMs: 20_000 }), { maxUnavailable: 3 }).loadWeights([7], 7, 60);
    await Promise.all([load.stop(), relayedLoad.stop()]);
    expect([...load.errors, ...relayedLoad.errors].map(String)).to.deep.equal([]);
    expect(results.map((r) => r.version)).to.deep.equal([6, 6, 6]);
    expect(results.map((r) => r.pid)).to.deep.equal(svc.status().replicas.map((r) => r.pids[0]));
    expect(mostAtOnce(results)).to.equal(1);
    expect(wide.map((r) => r.version)).to.deep.equal([7, 7, 7]);
    expect(mostAtOnce(wide)).to.equal(3);
    expect((await rolling(svc).whoami()).map((w) => w.version)).to.deep.equal([7, 7, 7]);
    expect(svc.status().replicas.map((r) => r.version)).to.deep.equal([7, 7, 7]);
  });

  it("a roll through the registry that fails rejects with the same RollingUpdateError, across the wire", async () => {
    const pids = svc.status().replicas.map((r) => r.pids[0]!);
    const err = await rolling(viaRegistry)
      .loadWeights([8], 8, 10, pids[2]!)
      .then(() => undefined)
      .catch((e: unknown) => e);
    expect(err).to.be.instanceOf(RollingUpdateError);
    expect((err as RollingUpdateError).details).to.deep.include({ updated: [0, 1], failed: 2, notUpdated: [2] });
    expect((err as RollingUpdateError).cause).to.be.instanceOf(RemoteError);
    expect(svc.status().replicas.map((r) => r.version)).to.deep.equal([8, 8, 7]);
    await services.register("plain", class { f() { return 1; } });
    const plain = await services.get<{ f(): number }>("plain");
    const refused = await rolling(plain).f().catch((e: unknown) => e);
    expect(refused).to.be.instanceOf(InvalidOptionsError);
    expect(String(refused)).to.match(/replicated service/);
    expect(() => rolling({} as never)).to.throw(InvalidOptionsError, /takes a handle/);
  });

  it("answers a malformed Ab-Min-Version header with a CodecError, through the registry face", async () => {
    const { codec } = services.connection;
    const nc = services.connection.nc!;
    const { headers } = await import("@nats-io/transport-node");
    const h = headers();
    h.set("Ab-Call", "2000 hostile-1 act");
    h.set("Ab-Min-Version", "seven");
    const reply = await nc.request(`ab.${ns}.svc.policy`, codec.encode([1]), { timeout: 2_000, headers: h });
    const [tag, wire] = codec.decode<[number, { code: string; message: string }]>(reply.data);
    expect(tag).to.equal(1);
    expect(wire.code).to.equal("CODEC");
    expect(wire.message).to.match(/Ab-Min-Version must be a finite number/);
  });

  it("refuses bad options where they are given", () => {
    expect(() => svc.loadWeights.rolling.with({ maxUnavalable: 2 } as never)).to.throw(InvalidOptionsError, /did you mean "maxUnavailable"/);
    expect(() => svc.loadWeights.rolling.with({ maxUnavailable: 0 })).to.throw(InvalidOptionsError, /maxUnavailable must be an integer >= 1/);
    expect(() => withOptions(svc, { minVersion: "7" as never })).to.throw(InvalidOptionsError, /minVersion must be a finite number/);
  });
});
