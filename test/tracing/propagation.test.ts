import { expect } from "chai";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
import { encodeCallHeader } from "../../src/call/index.ts";
import { connectBus, headersOf, type BusConnection, type Inbound } from "../../src/connection/index.ts";
import { currentCall, getServices, InferenceServer, NatsTransport, PythonExecutorService, type Services } from "../../src/index.ts";
import { unwrapReply } from "../../src/reply/index.ts";
import type { ServiceProxy } from "../../src/service/index.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { formatTraceparent, parseTraceparent, TRACE_HEADERS } from "../../src/tracing/index.ts";
import { TracedB } from "../fixtures/replicas/traced.ts";
import { memoryExporter, registerSdk, toRecord, unregisterSdk } from "../fixtures/tracing/sdk.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";

const TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

class Probe {
  seen() {
    const { traceparent, tracestate } = currentCall();
    return { traceparent, tracestate };
  }
  async *count(n: number) {
    for (let i = 0; i < n; i++) yield i;
  }
  boom(): never {
    throw new TypeError("probe failed");
  }
}

/** Every call message on `subject`, as a host would read its trace headers. */
function tap(conn: BusConnection, subject: string): { heard: string[][] } {
  const heard: string[][] = [];
  conn.transport.subscribe(subject, (m: Inbound) => heard.push([...headersOf(m, TRACE_HEADERS)]));
  return { heard };
}

describe("tracing: W3C trace context", function () {
  this.timeout(30_000);

  it("traceparent: formats and parses, and refuses what W3C forbids", () => {
    const sc = parseTraceparent(TP, "vendor=abc,other=1")!;
    expect(sc).to.include({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: 1, isRemote: true });
    expect(sc.traceState!.get("vendor")).to.equal("abc");
    expect(formatTraceparent(sc)).to.equal(TP);
    expect(parseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-later", "")).to.include({ traceFlags: 0 });
    for (const bad of [
      "",
      "garbage",
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
      `${TP}-extra`, // version 00 has no more fields
    ]) {
      expect(parseTraceparent(bad, ""), bad).to.equal(undefined);
    }
    // A malformed tracestate is dropped; the trace goes on.
    expect(parseTraceparent(TP, "=====,,,")).to.not.equal(undefined);
  });

  describe("without an SDK", () => {
    const ns = uniqueNamespace("trn");
    let services: Services;
    let conn: BusConnection;
    let relayed: ServiceProxy<TracedB> | undefined;

    before(async () => {
      unregisterSdk();
      services = await getServices({ servers: testUrl(), namespace: ns });
      conn = await connectBus({ servers: testUrl() });
    });
    after(async () => {
      await relayed?.shutdown();
      await services.close();
      await conn.close();
    });

    it("calls work, carry no trace header, and currentCall() has no trace context", async () => {
      await services.register("probe", Probe);
      const { heard } = tap(conn, subjectsFor(ns).call("probe"));
      await conn.transport.flush();
      const probe = await services.get<Probe>("probe");
      expect(await probe.seen()).to.deep.equal({ traceparent: "", tracestate: "" });
      const items: number[] = [];
      for await (const i of probe.count(3)) items.push(i);
      expect(items).to.deep.equal([0, 1, 2]);
      expect(await probe.boom().catch((e: Error) => e.message)).to.equal("probe failed");
      expect(heard).to.deep.equal([["", ""], ["", ""], ["", ""]]);
    });

    it("relays pass the caller's trace context through untouched (registry face → controller → replica)", async () => {
      relayed = await TracedB.options({ meshName: "relayed", servers: testUrl(), namespace: ns }).asService();
      const bytes = await conn.transport.request(subjectsFor(ns).call("relayed"), conn.codec.encode([]), 10_000, {
        headers: { "Ab-Call": encodeCallHeader(10_000, "raw-call-1", "context"), traceparent: TP, tracestate: "vendor=abc" },
      });
      expect(unwrapReply(conn.codec, bytes)).to.deep.equal({ traceparent: TP, tracestate: "vendor=abc" });
    });

    it("ACTORBUS_TRACING=off: a registered SDK gets no span and calls carry no context", async () => {
      const script = fileURLToPath(new URL("../fixtures/tracing/disabled.ts", import.meta.url));
      const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", script], { env: { ...process.env, ACTORBUS_TRACING: "off" }, timeout: 20_000 });
      expect(JSON.parse(stdout.trim().split("\n").pop()!)).to.deep.equal({ spans: 0, traceparent: "" });
    });
  });

  describe("with an SDK in this process", () => {
    const ns = uniqueNamespace("trs");
    let services: Services;
    let conn: BusConnection;
    let exporter: InMemorySpanExporter;

    before(async () => {
      exporter = memoryExporter();
      registerSdk(exporter);
      services = await getServices({ servers: testUrl(), namespace: ns });
      conn = await connectBus({ servers: testUrl() });
      await services.register("probe", Probe);
    });
    after(async () => {
      await services.close();
      await conn.close();
      unregisterSdk();
    });
    beforeEach(() => exporter.reset());
    const spans = () => exporter.getFinishedSpans().map(toRecord);

    it("the call's headers carry the client span's context; the host's span is its child and the method sees it", async () => {
      const { heard } = tap(conn, subjectsFor(ns).call("probe"));
      await conn.transport.flush();
      const probe = await services.get<Probe>("probe");
      const seen = await probe.seen();
      const client = spans().find((s) => s.kind === SpanKind.CLIENT && s.name === "probe/seen")!;
      const server = spans().find((s) => s.kind === SpanKind.SERVER && s.name === "probe/seen")!;
      expect(heard).to.deep.equal([[`00-${client.traceId}-${client.spanId}-01`, ""]]);
      expect(server.parentSpanId).to.equal(client.spanId);
      expect(seen.traceparent).to.equal(`00-${server.traceId}-${server.spanId}-01`);
      expect(server.attributes).to.include({ "rpc.system": "actorbus", "rpc.service": "probe", "rpc.method": "seen", "messaging.system": "nats", "actorbus.namespace": ns });
      expect(server.attributes["actorbus.call_id"]).to.equal(client.attributes["actorbus.call_id"]);
      const queue = spans().find((s) => s.name === "queue")!;
      expect(queue.parentSpanId).to.equal(server.spanId);
      expect(queue.start).to.be.at.least(server.start - 1);
    });

    it("a stream's spans last until its last item", async () => {
      const probe = await services.get<Probe>("probe");
      const items: number[] = [];
      for await (const i of probe.count(3)) {
        items.push(i);
        if (i === 0) expect(spans().filter((s) => s.kind === SpanKind.CLIENT && s.name === "probe/count")).to.deep.equal([]);
      }
      expect(items).to.deep.equal([0, 1, 2]);
      const client = spans().find((s) => s.kind === SpanKind.CLIENT && s.name === "probe/count")!;
      expect(client.attributes).to.include({ "actorbus.stream": true, "actorbus.outcome": "OK" });
      // The host ends its span when the stream's end has left.
      await new Promise((r) => setTimeout(r, 50));
      const server = spans().find((s) => s.kind === SpanKind.SERVER && s.name === "probe/count")!;
      expect(server.parentSpanId).to.equal(client.spanId);
    });

    it("a method's exception: recorded on the host's span, status ERROR on both sides", async () => {
      const probe = await services.get<Probe>("probe");
      await probe.boom().catch(() => {});
      for (const kind of [SpanKind.CLIENT, SpanKind.SERVER]) {
        const s = spans().find((x) => x.kind === kind && x.name === "probe/boom")!;
        expect(s.status).to.deep.include({ code: SpanStatusCode.ERROR, message: "probe failed" });
        expect(s.attributes["actorbus.outcome"]).to.equal("REMOTE");
      }
      expect(spans().find((x) => x.kind === SpanKind.SERVER && x.name === "probe/boom")!.events).to.deep.equal(["exception"]);
    });

    it("inference requests: a client span per request, the server's span under it, the batch wait as its queue", async () => {
      const transport = new NatsTransport<number, number>({ connection: conn, namespace: ns, name: "policy" });
      const server = new InferenceServer((xs: number[]) => xs.map((x) => x * 2), transport, { maxBatchSize: 8, collate: (xs: number[]) => xs }).start();
      await server.ready();
      const client = server.client();
      expect(await Promise.all([1, 2, 3].map((x) => client.call(x)))).to.deep.equal([2, 4, 6]);
      await server.shutdown();
      const clients = spans().filter((s) => s.name === "policy/infer" && s.kind === SpanKind.CLIENT);
      const servers = spans().filter((s) => s.name === "policy/infer" && s.kind === SpanKind.SERVER);
      expect(clients).to.have.length(3);
      expect(servers.map((s) => s.parentSpanId).sort()).to.deep.equal(clients.map((s) => s.spanId).sort());
      for (const s of servers) {
        expect(s.attributes["actorbus.outcome"]).to.equal("OK");
        const queue = spans().find((q) => q.name === "queue" && q.parentSpanId === s.spanId)!;
        expect(queue.attributes["actorbus.batch_size"]).to.be.within(1, 3);
      }
    });

    it("executor runs: the interpreter's run is a span under the call that asked for it", async () => {
      await services.register("py", PythonExecutorService, { poolSize: 1, timeoutMs: 10_000 });
      const py = await services.get<PythonExecutorService>("py");
      const r = await py.execute("print(6 * 7)");
      expect(r.stdout).to.equal("42\n");
      const server = spans().find((s) => s.name === "py/execute" && s.kind === SpanKind.SERVER)!;
      const run = spans().find((s) => s.name === "python.execute")!;
      expect(run.parentSpanId).to.equal(server.spanId);
      expect(run.attributes).to.include({ "actorbus.executor.interpreter": 0, "actorbus.executor.returncode": 0, "actorbus.executor.success": true });
      await services.remove("py");
    });
  });
});
