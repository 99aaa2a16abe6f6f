import { existsSync } from "node:fs";
import { expect } from "chai";
import { withOptions } from "../../src/call/index.ts";
import { CallTimeoutError, OverloadedError, RemoteError, MethodNotFoundError } from "../../src/errors/index.ts";
import { createMetrics, serveMetrics, type Metrics } from "../../src/metrics/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { PROMTOOL, promtoolCheck, valueOf } from "./exposition.ts";

class Gate {
  private waiting: (() => void)[] = [];
  add(a: number, b: number) {
    return a + b;
  }
  fail(): never {
    throw new Error("boom");
  }
  /** Resolves when the test opens the gate. */
  async hold(): Promise<string> {
    await new Promise<void>((r) => this.waiting.push(r));
    return "held";
  }
  open(): number {
    const n = this.waiting.length;
    for (const r of this.waiting.splice(0)) r();
    return n;
  }
  held(): number {
    return this.waiting.length;
  }
}

describe("metrics: calls through handles", function () {
  this.timeout(30_000);
  const ns = uniqueNamespace("met");
  let metrics: Metrics;
  let owner: Services;
  let client: Services;

  before(async () => {
    metrics = await createMetrics();
    owner = await getServices({ namespace: ns, servers: testUrl(), metrics });
    client = await getServices({ namespace: ns, servers: testUrl(), metrics });
  });
  after(async () => {
    await client?.close();
    await owner?.close();
  });

  const host = (method: string, code: string) => ({ namespace: ns, service: "gate", method, code });

  it("counts OK, REMOTE, METHOD_NOT_FOUND (as other), CALL_TIMEOUT and OVERLOADED on both sides, with durations", async () => {
    const instance = new Gate();
    await owner.registerInstance("gate", instance, { maxConcurrency: 1, maxPending: 1 });
    const gate = await client.getClient<Gate & { nope(): void }>("gate");

    for (let i = 0; i < 3; i++) expect(await gate.add(i, 1)).to.equal(i + 1);
    expect(await gate.fail().catch((e) => e)).to.be.instanceOf(RemoteError);
    expect(await gate.nope().catch((e) => e)).to.be.instanceOf(MethodNotFoundError);

    // One call runs (held), one waits with a short deadline, the next finds the mailbox full.
    const running = gate.hold();
    await until(async () => (await metrics.expose()).includes(`actorbus_calls_in_flight{namespace="${ns}",service="gate"} 1`), 5_000, "the held call to run");
    const queuedAt = Date.now();
    const queued = withOptions(gate, { timeoutMs: 150 }).hold();
    await until(async () => valueOf(await metrics.expose(), "actorbus_queue_depth", { namespace: ns, service: "gate" }) === 1, 5_000, "a queued call");
    expect(await gate.add(1, 1).catch((e) => e)).to.be.instanceOf(OverloadedError);
    expect(await queued.catch((e) => e)).to.be.instanceOf(CallTimeoutError);
    // The host's deadline for it starts when the call arrives, a moment after the caller's:
    // let it pass too, or the host would still run it when the held call ends.
    await until(() => Date.now() > queuedAt + 150 + 25, 1_000, "the host's deadline of the queued call");
    // The queued call's caller gave up; the host skips it with CALL_TIMEOUT once the held call ends.
    expect(instance.open()).to.equal(1);
    expect(await running).to.equal("held");

    await until(async () => valueOf(await metrics.expose(), "actorbus_calls_total", host("hold", "CALL_TIMEOUT")) === 1, 5_000, "the expired call on the host").catch(async (e: Error) => {
      // Which series there are instead says what happened to the queued call.
      e.message += `\n${(await metrics.expose()).split("\n").filter((l) => l.startsWith("actorbus_calls_total") || l.startsWith("actorbus_queue_depth") || l.startsWith("actorbus_calls_in_flight")).join("\n")}`;
      throw e;
    });
    const text = await metrics.expose();
    expect(valueOf(text, "actorbus_calls_total", host("add", "OK"))).to.equal(3);
    expect(valueOf(text, "actorbus_calls_total", host("fail", "REMOTE"))).to.equal(1);
    expect(valueOf(text, "actorbus_calls_total", host("other", "METHOD_NOT_FOUND"))).to.equal(1);
    expect(valueOf(text, "actorbus_calls_total", host("add", "OVERLOADED"))).to.equal(1);
    expect(valueOf(text, "actorbus_calls_total", host("hold", "OK"))).to.equal(1);
    expect(valueOf(text, "actorbus_overload_rejections_total", { namespace: ns, service: "gate" })).to.equal(1);
    expect(valueOf(text, "actorbus_call_duration_seconds_count", { namespace: ns, service: "gate", method: "add" })).to.equal(3);
    expect(valueOf(text, "actorbus_call_duration_seconds_bucket", { namespace: ns, service: "gate", method: "add", le: "+Inf" })).to.equal(3);

    // The client's view: the handle knew the declared methods from the registry, so "nope" is "other".
    const cl = (method: string, code: string) => ({ namespace: ns, service: "gate", method, code });
    expect(valueOf(text, "actorbus_client_calls_total", cl("add", "OK"))).to.equal(3);
    expect(valueOf(text, "actorbus_client_calls_total", cl("fail", "REMOTE"))).to.equal(1);
    expect(valueOf(text, "actorbus_client_calls_total", cl("other", "METHOD_NOT_FOUND"))).to.equal(1);
    expect(valueOf(text, "actorbus_client_calls_total", cl("hold", "CALL_TIMEOUT"))).to.equal(1);
    expect(valueOf(text, "actorbus_client_calls_total", cl("add", "OVERLOADED"))).to.equal(1);
    expect(valueOf(text, "actorbus_client_call_duration_seconds_count", { namespace: ns, service: "gate", method: "add" })).to.equal(4);
    const sum = valueOf(text, "actorbus_client_call_duration_seconds_sum", { namespace: ns, service: "gate", method: "hold" })!;
    expect(sum).to.be.greaterThan(0.1);
  });

  it("serves the exposition over HTTP, which promtool accepts; close() is idempotent", async function () {
    const server = await serveMetrics({ metrics, port: 0 });
    try {
      const res = await fetch(server.url);
      expect(res.status).to.equal(200);
      expect(res.headers.get("content-type")).to.match(/^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      expect(text).to.include("# TYPE actorbus_calls_total counter");
      expect(text).to.include("# TYPE actorbus_call_duration_seconds histogram");
      expect((await fetch(server.url.replace("/metrics", "/other"))).status).to.equal(404);
      if (!existsSync(PROMTOOL)) this.skip();
      const check = promtoolCheck(text);
      expect(check.status, check.output).to.equal(0);
    } finally {
      await server.close();
      await server.close();
    }
    expect(await fetch(server.url).then(() => "answered", () => "refused")).to.equal("refused");
  });

  it("without metrics, nothing is recorded and handles work as before", async () => {
    const plain = await getServices({ namespace: ns, servers: testUrl() });
    try {
      expect(plain.metrics).to.equal(undefined);
      const before = await metrics.expose();
      const gate = await plain.getClient<Gate>("gate");
      expect(await gate.add(2, 2)).to.equal(4);
      const after = await metrics.expose();
      // The host (in the owner process, with metrics) counts it; the plain client does not.
      expect(valueOf(after, "actorbus_client_calls_total", { namespace: ns, service: "gate", method: "add", code: "OK" })).to.equal(
        valueOf(before, "actorbus_client_calls_total", { namespace: ns, service: "gate", method: "add", code: "OK" }),
      );
      expect(valueOf(after, "actorbus_calls_total", { namespace: ns, service: "gate", method: "add", code: "OK" })).to.equal(
        valueOf(before, "actorbus_calls_total", { namespace: ns, service: "gate", method: "add", code: "OK" })! + 1,
      );
    } finally {
      await plain.close();
    }
  });
});
