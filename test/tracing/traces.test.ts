import { expect } from "chai";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
import { getServices, type Services } from "../../src/index.ts";
import { memoryExporter, registerSdk, toRecord, unregisterSdk, type SpanRecord } from "../fixtures/tracing/sdk.ts";
import { TracedA, TracedB } from "../fixtures/replicas/traced.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";

/**
 * One trace across processes: this process (the caller, and the controllers of A and B with
 * their registry faces), A's replica, and B's replicas, one of which is killed by the call and
 * the call retried on the other. Replicas write their spans to files; this process keeps its own.
 */
describe("tracing: one OpenTelemetry trace across processes", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace("trc");
  let dir: string;
  let exporter: InMemorySpanExporter;
  let services: Services;
  const live: { shutdown(): Promise<void> }[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "actorbus-traces-"));
    exporter = memoryExporter();
    registerSdk(exporter);
    const env = { ACTORBUS_TEST_TRACE_DIR: dir };
    live.push(await TracedB.options({ numReplicas: 2, maxTaskRetries: 1, meshName: "B", servers: testUrl(), namespace: ns, env }).asService());
    live.push(await TracedA.options({ meshName: "A", servers: testUrl(), namespace: ns, env }).asService({ servers: testUrl(), namespace: ns }));
    services = await getServices({ servers: testUrl(), namespace: ns });
  });

  after(async () => {
    await services?.close();
    await Promise.all(live.map((s) => s.shutdown()));
    unregisterSdk();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Every span of one trace: this process's and those the replicas exported. */
  const spansOf = (traceId: string): SpanRecord[] => {
    const mine = exporter.getFinishedSpans().map(toRecord);
    const theirs = readdirSync(dir)
      .filter((f) => f.endsWith(".jsonl"))
      .flatMap((f) => readFileSync(join(dir, f), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as SpanRecord));
    return [...mine, ...theirs].filter((s) => s.traceId === traceId);
  };
  const one = (spans: SpanRecord[], pred: (s: SpanRecord) => boolean, what: string): SpanRecord => {
    const found = spans.filter(pred);
    expect(found, `${what} among ${spans.map((s) => `${s.name}/${s.kind}@${s.pid}`).join(", ")}`).to.have.length(1);
    return found[0]!;
  };

  it("caller → A → B, with B's first replica killed and the call retried on the other: one trace, linked spans", async () => {
    const a = await services.get<TracedA>("A");
    const marker = join(dir, "b-killed");
    const out = await trace.getTracer("test").startActiveSpan("request", async (span) => {
      try {
        return await a.chain(21, marker);
      } finally {
        span.end();
      }
    });
    expect(out.v).to.equal(42);

    const request = exporter.getFinishedSpans().find((s) => s.name === "request")!.spanContext();
    const requestId = request.spanId;
    // Replicas export as their spans end; A's ended before its reply left, so this is quick.
    await until(() => spansOf(request.traceId).some((s) => s.name === "A/chain" && s.kind === SpanKind.SERVER && s.pid !== process.pid), 5_000, "A's server span");
    const spans = spansOf(request.traceId);

    // The caller's handle: a CLIENT span under the caller's active span.
    const callerClient = one(spans, (s) => s.name === "A/chain" && s.kind === SpanKind.CLIENT && s.parentSpanId === requestId, "the caller's client span");
    expect(callerClient.pid).to.equal(process.pid);
    expect(callerClient.attributes).to.include({ "rpc.system": "actorbus", "rpc.service": "A", "rpc.method": "chain", "messaging.system": "nats", "actorbus.namespace": ns, "actorbus.outcome": "OK" });
    // A's registry face relays it (SERVER, relay) and its controller sends it to a replica (CLIENT, attempt 0).
    const aRelay = one(spans, (s) => s.name === "A/chain" && s.kind === SpanKind.SERVER && s.parentSpanId === callerClient.spanId, "A's registry face");
    expect(aRelay.attributes["actorbus.relay"]).to.equal(true);
    const aAttempt = one(spans, (s) => s.name === "A/chain" && s.kind === SpanKind.CLIENT && s.parentSpanId === aRelay.spanId, "A's attempt");
    expect(aAttempt.attributes).to.include({ "actorbus.attempt": 0, "actorbus.replica": 0 });
    // A's replica, in a process of its own, runs the method; its call to B hangs under it.
    const aServer = one(spans, (s) => s.name === "A/chain" && s.kind === SpanKind.SERVER && s.parentSpanId === aAttempt.spanId, "A's replica span");
    expect(aServer.pid).to.not.equal(process.pid);
    expect(aServer.attributes).to.include({ "actorbus.relay": false, "actorbus.outcome": "OK" });
    one(spans, (s) => s.name === "queue" && s.parentSpanId === aServer.spanId, "A's queue wait");
    const bClient = one(spans, (s) => s.name === "B/work" && s.kind === SpanKind.CLIENT && s.parentSpanId === aServer.spanId, "A's call to B");
    expect(bClient.pid).to.equal(aServer.pid);
    const bRelay = one(spans, (s) => s.name === "B/work" && s.kind === SpanKind.SERVER && s.parentSpanId === bClient.spanId, "B's registry face");
    // Two attempts on two replicas: the first one's replica was killed mid-call.
    const attempts = spans.filter((s) => s.name === "B/work" && s.kind === SpanKind.CLIENT && s.parentSpanId === bRelay.spanId).sort((x, y) => Number(x.attributes["actorbus.attempt"]) - Number(y.attributes["actorbus.attempt"]));
    expect(attempts.map((s) => s.attributes["actorbus.attempt"])).to.deep.equal([0, 1]);
    expect(attempts[0]!.attributes["actorbus.replica"]).to.not.equal(attempts[1]!.attributes["actorbus.replica"]);
    expect(attempts[0]!.attributes["actorbus.outcome"]).to.equal("REPLICA_CRASHED");
    expect(attempts[0]!.status.code).to.equal(SpanStatusCode.ERROR);
    expect(attempts[1]!.attributes["actorbus.outcome"]).to.equal("OK");
    const bServer = one(spans, (s) => s.name === "B/work" && s.kind === SpanKind.SERVER && s.parentSpanId === attempts[1]!.spanId, "B's surviving replica");
    const killedPid = Number(readFileSync(marker, "utf8"));
    expect(bServer.pid).to.not.be.oneOf([process.pid, aServer.pid, killedPid]);
    // The killed replica never ended its span of the call; what it exported is in the same trace.
    expect(spans.filter((s) => s.pid === killedPid && s.name === "B/work")).to.deep.equal([]);
    // Three processes besides this one took part: A's replica and both of B's.
    expect(new Set(spans.map((s) => s.pid)).size).to.be.at.least(3);
    // currentCall().traceparent inside A is its server span's context.
    expect(out.traceparent).to.equal(`00-${aServer.traceId}-${aServer.spanId}-01`);
  });

  it("a method's exception marks its span and every span up the chain as errors", async () => {
    const a = await services.get<TracedA>("A");
    const err = await trace.getTracer("test").startActiveSpan("failing", async (span) => {
      try {
        return await a.chainFail().catch((e: Error) => e);
      } finally {
        span.end();
      }
    });
    expect(err).to.be.instanceOf(Error);
    const traceId = exporter.getFinishedSpans().find((s) => s.name === "failing")!.spanContext().traceId;
    await until(() => spansOf(traceId).some((s) => s.name === "B/fail" && s.kind === SpanKind.SERVER && s.pid !== process.pid), 5_000, "B's server span");
    const spans = spansOf(traceId);
    const bServer = one(spans, (s) => s.name === "B/fail" && s.kind === SpanKind.SERVER && s.pid !== process.pid, "B's replica span");
    expect(bServer.status.code).to.equal(SpanStatusCode.ERROR);
    expect(bServer.status.message).to.equal("B failed on purpose");
    expect(bServer.events).to.include("exception");
    expect(bServer.attributes["actorbus.outcome"]).to.equal("REMOTE");
    for (const s of spans.filter((x) => x.name === "A/chainFail" || x.name === "B/fail")) {
      expect(s.status.code, `${s.name} ${s.kind} @${s.pid}`).to.equal(SpanStatusCode.ERROR);
    }
    const callerClient = one(spans, (s) => s.name === "A/chainFail" && s.kind === SpanKind.CLIENT && s.pid === process.pid && s.attributes["actorbus.attempt"] === undefined, "the caller's client span");
    expect(callerClient.attributes["actorbus.outcome"]).to.equal("REMOTE");
  });
});
