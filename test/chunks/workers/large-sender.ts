/**
 * Sends large values from another process, so that a test can kill it mid-value:
 * `node --import tsx large-sender.ts <inference|stream> <json>`. Prints one JSON line once it
 * serves, and stays up until its stdin closes or it is killed.
 */
import { connectBus } from "../../../src/connection/index.ts";
import { InferenceServer, NatsTransport } from "../../../src/inference/index.ts";
import { getServices } from "../../../src/index.ts";

const [mode, json] = process.argv.slice(2);
const args = JSON.parse(json ?? "{}") as { url: string; namespace: string };
const out = (v: unknown) => process.stdout.write(JSON.stringify(v) + "\n");
const untilStdinCloses = () => new Promise((r) => process.stdin.resume().once("close", r).once("end", r));

/** Yields `count` Float32Arrays of `n` elements, item k filled with k. */
class LargeItems {
  async *items(count: number, n: number): AsyncGenerator<Float32Array> {
    for (let k = 0; k < count; k++) yield new Float32Array(n).fill(k);
  }
}

if (mode === "inference") {
  const conn = await connectBus({ servers: args.url });
  const transport = new NatsTransport<{ n: number }, { action: Float32Array }>({ connection: conn, namespace: args.namespace, name: "policy" });
  // Each request asks for a result of n float32s.
  const server = new InferenceServer(async (items: { n: number }[]) => items.map((i) => ({ action: new Float32Array(i.n).fill(1) })), transport, { collate: (items) => items }).start();
  await server.ready();
  out({ ready: true, pid: process.pid });
  await untilStdinCloses();
  await server.shutdown();
  await conn.close();
} else if (mode === "inference-client") {
  // Submits one observation of n float32s and waits (a test kills it while the server pulls).
  const conn = await connectBus({ servers: args.url });
  const client = new NatsTransport<{ observation: Float32Array }, unknown>({ connection: conn, namespace: args.namespace, name: "policy" });
  out({ ready: true, pid: process.pid });
  await client.submit({ observation: new Float32Array((args as { n?: number }).n ?? 0) }).catch(() => {});
  await untilStdinCloses();
  await conn.close();
} else if (mode === "stream") {
  const services = await getServices({ backend: "nats", servers: args.url, namespace: args.namespace });
  await services.register("items", LargeItems);
  out({ ready: true, pid: process.pid });
  await untilStdinCloses();
  await services.close();
} else {
  throw new Error(`unknown mode ${mode}`);
}
