/**
 * Core benchmark: actorbus method calls vs raw nats.js request/reply and Moleculer (bench/peers.ts),
 * tracing overhead (bench/tracing.ts), registry watch latency across processes, the local
 * backend's call overhead.
 */
import { connect } from "@nats-io/transport-node";
import { fileURLToPath } from "node:url";
import { createCodec, getServices, startNatsServer } from "../src/index.ts";
import { pipelined, printTable, round, sequential, startChild, summarize } from "./lib.ts";
import { benchTracing } from "./tracing.ts";
import { benchPeers } from "./peers.ts";

const PEER = fileURLToPath(new URL("./core-peer.ts", import.meta.url));
const PIPE = 60_000;
const IN_FLIGHT = 256;

export async function benchCore(): Promise<Record<string, unknown>> {
  const server = await startNatsServer();
  const payload = { text: "hello world", ids: [1, 2, 3, 4, 5, 6, 7, 8], step: 42 };
  const bytes = createCodec().encode([payload]); // the payload of an actorbus call (its context rides in headers)
  try {
    // actorbus vs raw nats.js request (noAsyncTraces) and Moleculer, rounds interleaved, 1:1
    // and n:n; memory of calls in flight.
    const peers = await benchPeers(server.url);
    // What async stack traces cost raw nats.js (actorbus's figure is against its fastest setting).
    const raw = await startChild(PEER, ["raw", server.url]);
    const ncTraces = await connect({ servers: server.url });
    const rawTracesPipe = await pipelined(PIPE / 2, IN_FLIGHT, () => ncTraces.request("bench.raw", bytes, { timeout: 30_000 }));
    await ncTraces.close();
    await raw.stop();

    const ns = "bench_core";
    const services = await getServices({ servers: server.url, namespace: ns });

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

    const watch = summarize(delays);
    const figures = {
      peers,
      payloadBytes: bytes.length,
      rawPipelinedWithAsyncTraces: rawTracesPipe,
      registryWatch: { events: delays.length, ...watch },
      targets: { watchP99MsAtMost: 10 },
      tracing,
      local: { sequential: localSeq, directCall: direct, overheadUsPerCall: round(1000 / localSeq.callsPerSec * 1000 - 1000 / direct.callsPerSec * 1000, 2) },
    };
    printTable("core: registry watch, local backend", [
      [`raw nats.js pipelined with async traces on (${IN_FLIGHT} in flight)`, `${rawTracesPipe.callsPerSec}/s (${peers.pipelined.raw.callsPerSec}/s with noAsyncTraces)`],
      ["registry watch latency p50/p99 ms (p99 <= 10)", `${watch.p50Ms} / ${watch.p99Ms}`],
      ["local backend calls/s, p50", `${localSeq.callsPerSec}  p50 ${localSeq.p50Ms} ms`],
      ["local backend overhead per call (us)", figures.local.overheadUsPerCall],
    ]);
    return figures;
  } finally {
    await server.stop();
  }
}
