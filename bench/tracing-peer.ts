/**
 * The processes of the tracing benchmark: `host` serves echo services, `client` holds a
 * handle to each and runs a round of pipelined calls through one when told ("<arm><0|1>
 * <calls> <inFlight>" on stdin, elapsed ms on stdout). Arm "off" is made with ACTORBUS_TRACING=off
 * (instrumentation disabled), the other without: `api` (no SDK in the process) or, with
 * BENCH_OTEL_SDK=1, `sdk` (an SDK sampling every call). Both arms share the processes, so
 * nothing about the processes themselves tells them apart.
 */
import { createInterface } from "node:readline";
import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor, type ReadableSpan, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import { getServices } from "../src/index.ts";

const [mode, url, namespace] = process.argv.slice(2) as [string, string, string];
const sdk = process.env.BENCH_OTEL_SDK === "1";
const arm = sdk ? "sdk" : "api";
// Two services per arm, made in the order off, arm, arm, off: what being made first or last
// does to a service (its subscription, its warm-up) falls on both arms alike.
const keys = ["off0", `${arm}0`, `${arm}1`, "off1"];

if (sdk) {
  // What an application exporting every span pays, short of its exporter's network I/O.
  const discard: SpanExporter = {
    export(_spans: ReadableSpan[], done) {
      done({ code: 0 });
    },
    async shutdown() {},
  };
  const processor = new BatchSpanProcessor(discard, { maxQueueSize: 65_536, maxExportBatchSize: 4_096, scheduledDelayMillis: 200 });
  trace.setGlobalTracerProvider(new BasicTracerProvider({ sampler: new AlwaysOnSampler(), spanProcessors: [processor] }));
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
}

/** Makes what `make` makes with ACTORBUS_TRACING=off for the off arm (read when a handle or host is made). */
async function asArm<T>(key: string, make: () => Promise<T>): Promise<T> {
  if (key.startsWith("off")) process.env.ACTORBUS_TRACING = "off";
  else delete process.env.ACTORBUS_TRACING;
  try {
    return await make();
  } finally {
    delete process.env.ACTORBUS_TRACING;
  }
}

const services = await getServices({ servers: url, namespace });
const payload = { text: "hello world", ids: [1, 2, 3, 4, 5, 6, 7, 8], step: 42 };
class Echo {
  echo(v: unknown) {
    return v;
  }
}
if (mode === "host") {
  for (const key of keys) await asArm(key, () => services.register(`echo_${key}`, Echo));
  console.log("ready");
  await new Promise((r) => (process.stdin.resume(), process.stdin.once("end", r).once("close", r)));
} else {
  const handles: Record<string, Echo> = {};
  for (const key of keys) {
    const h = await asArm(key, () => services.get<Echo>(`echo_${key}`));
    await Promise.all(Array.from({ length: 256 }, () => h.echo(payload))); // warm-up
    handles[key] = h;
  }
  console.log("ready");
  for await (const line of createInterface({ input: process.stdin })) {
    const [key, calls, inFlight] = line.split(" ") as [string, string, string];
    const echo = handles[key]!;
    let started = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: Number(inFlight) }, async () => {
        while (started < Number(calls)) {
          started++;
          await echo.echo(payload);
        }
      }),
    );
    console.log(String(performance.now() - t0));
  }
}
await services.close();
