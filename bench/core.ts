/**
 * Core benchmark: actorbus method calls vs raw nats.js request/reply, one client here and one
 * responder in another process, same payload; registry watch latency across processes; the
 * local backend's call overhead.
 */
import { connect } from "@nats-io/transport-node";
import { fileURLToPath } from "node:url";
import { createCodec, getServices, startNatsServer } from "../src/index.ts";
import { pipelined, printTable, ratio, round, sequential, startChild, summarize } from "./lib.ts";
import { benchTracing } from "./tracing.ts";
import { benchPeers } from "./peers.ts";

const PEER = fileURLToPath(new URL("./core-peer.ts", import.meta.url));
const SEQ = 5_000;
const PIPE = 60_000;
const IN_FLIGHT = 256;

export async function benchCore(): Promise<Record<string, unknown>> {
  const server = await startNatsServer();
  const payload = { text: "hello world", ids: [1, 2, 3, 4, 5, 6, 7, 8], step: 42 };
  const bytes = createCodec().encode([payload]); // the payload of an actorbus call (its context rides in headers)
  try {
    // Baseline: raw nats.js request() with noAsyncTraces (its fastest setting), echo responder.
    const raw = await startChild(PEER, ["raw", server.url]);
    const nc = await connect({ servers: server.url, noAsyncTraces: true });
    const rawCall = () => nc.request("bench.raw", bytes, { timeout: 30_000 });
    const rawSeq = await sequential(SEQ, rawCall);
    const rawPipe = await pipelined(PIPE, IN_FLIGHT, rawCall);
    const ncTraces = await connect({ servers: server.url });
    const rawTracesPipe = await pipelined(PIPE / 2, IN_FLIGHT, () => ncTraces.request("bench.raw", bytes, { timeout: 30_000 }));
    await ncTraces.close();
    await nc.close();
    await raw.stop();

    const ns = "bench_core";
    const actor = await startChild(PEER, ["actor", server.url, ns]);
    const services = await getServices({ servers: server.url, namespace: ns });
    const echo = await services.get<{ echo(v: unknown): unknown }>("echo");
    const abSeq = await sequential(SEQ, () => echo.echo(payload));
    const abPipe = await pipelined(PIPE, IN_FLIGHT, () => echo.echo(payload));
    await actor.stop();

    // Registry change seen by another process through its KV watch.
    const watcher = await startChild(PEER, ["watch", server.url, ns]);
    const delays: number[] = [];
    class Nop {
      nop() {}
    }
    for (let i = 0; i < 200; i++) {
      await services.registerWithOptions(`svc${i}`, Nop, { metadata: { sentAt: String(performance.timeOrigin + performance.now()) } });
      const line = await watcher.lines.next();
      delays.push(Number(line.value));
    }
    await watcher.stop();
    await services.reset();
    await services.close();

    // Local backend: the same registry and actor code in memory, vs a plain method call.
    const local = await getServices({ backend: "local", namespace: "bench_local" });
    const localEcho = await local.register("echo", class {
      echo(v: unknown) {
        return v;
      }
    });
    const localSeq = await sequential(20_000, () => localEcho.echo(payload));
    const plain = { echo: async (v: unknown) => v };
    const direct = await sequential(200_000, () => plain.echo(payload));
    await local.reset();
    await local.close();

    // OpenTelemetry: the API with no SDK vs instrumentation disabled, and the cost of an SDK.
    const tracing = await benchTracing(server.url);

    // Peers: raw nats.js and Moleculer, interleaved, 1:1 and n:n; memory of calls in flight.
    const peers = await benchPeers(server.url);

    const watch = summarize(delays);
    const figures = {
      peers,
      payloadBytes: bytes.length,
      raw: { sequential: rawSeq, pipelined: rawPipe, pipelinedWithAsyncTraces: rawTracesPipe },
      actorbus: { sequential: abSeq, pipelined: abPipe },
      ratios: {
        sequentialThroughput: ratio(abSeq.callsPerSec, rawSeq.callsPerSec),
        pipelinedThroughput: ratio(abPipe.callsPerSec, rawPipe.callsPerSec),
        p50Latency: ratio(abSeq.p50Ms, rawSeq.p50Ms),
        p99Latency: ratio(abSeq.p99Ms, rawSeq.p99Ms),
      },
      targets: { throughputAtLeast: 0.9, p50AtMost: 1.15, watchP99MsAtMost: 10 },
      registryWatch: { events: delays.length, ...watch },
      tracing,
      local: { sequential: localSeq, directCall: direct, overheadUsPerCall: round(1000 / localSeq.callsPerSec * 1000 - 1000 / direct.callsPerSec * 1000, 2) },
    };
    printTable("core: actorbus calls vs raw nats.js request/reply (1 client, 1 responder process)", [
      ["payload (bytes)", bytes.length],
      ["raw sequential calls/s", `${rawSeq.callsPerSec}  p50 ${rawSeq.p50Ms} ms  p99 ${rawSeq.p99Ms} ms`],
      ["actorbus sequential calls/s", `${abSeq.callsPerSec}  p50 ${abSeq.p50Ms} ms  p99 ${abSeq.p99Ms} ms`],
      [`raw pipelined calls/s (${IN_FLIGHT} in flight)`, rawPipe.callsPerSec],
      [`raw pipelined, async traces on`, rawTracesPipe.callsPerSec],
      [`actorbus pipelined calls/s (${IN_FLIGHT} in flight)`, abPipe.callsPerSec],
      ["ratio sequential throughput (>= 0.9)", figures.ratios.sequentialThroughput],
      ["ratio pipelined throughput (>= 0.9)", figures.ratios.pipelinedThroughput],
      ["ratio p50 latency (<= 1.15)", figures.ratios.p50Latency],
      ["registry watch latency p50/p99 ms (p99 <= 10)", `${watch.p50Ms} / ${watch.p99Ms}`],
      ["local backend calls/s, p50", `${localSeq.callsPerSec}  p50 ${localSeq.p50Ms} ms`],
      ["local backend overhead per call (us)", figures.local.overheadUsPerCall],
    ]);
    return figures;
  } finally {
    await server.stop();
  }
}
