/**
 * Large values (issue 14, part 3): a 64 MB Float32Array argument and a 64 MB result through a
 * replicated service (128 MB moved per round trip), against raw core NATS pub/sub of the same
 * bytes in 1 MB chunks to a process that sends them back, and raw JetStream Object Store put + get
 * of the same bytes, all on one nats-server.
 */
import { connect } from "@nats-io/transport-node";
import { Objm } from "@nats-io/obj";
import { fileURLToPath } from "node:url";
import { getServices, startNatsServer } from "../src/index.ts";
import { printTable, ratio, round, startChild } from "./lib.ts";
import { TensorEcho } from "./tensor-actor.ts";

const PEER = fileURLToPath(new URL("./chunks-peer.ts", import.meta.url));
const MB = 1024 * 1024;
const SIZE = 64 * MB;
const ROUNDS = 6;

/** MB/s of one round trip of `bytes` each way. */
const rate = (ms: number) => round((2 * SIZE) / MB / (ms / 1000), 1);

async function rawRoundTrip(url: string): Promise<() => Promise<number>> {
  const nc = await connect({ servers: url, noAsyncTraces: true });
  const chunk = MB;
  const value = new Uint8Array(SIZE).map((_, i) => i & 0xff);
  let got = 0;
  let done: (() => void) | undefined;
  const back = new Uint8Array(SIZE);
  nc.subscribe("bench.chunks.out", {
    callback: (_e, m) => {
      back.set(m.data, got);
      got += m.data.length;
      if (got === SIZE) done?.();
    },
  });
  await nc.flush();
  return async () => {
    got = 0;
    const t0 = performance.now();
    const finished = new Promise<void>((r) => (done = r));
    nc.publish("bench.chunks.in", new TextEncoder().encode(`${SIZE},${chunk}`));
    for (let at = 0; at < SIZE; at += chunk) nc.publish("bench.chunks.in", value.subarray(at, at + chunk));
    await finished;
    return performance.now() - t0;
  };
}

async function objRoundTrip(url: string): Promise<{ run: () => Promise<number>; close: () => Promise<void> }> {
  const nc = await connect({ servers: url, noAsyncTraces: true });
  const os = await new Objm(nc).create("bench_chunks", { storage: "memory" } as never);
  const value = new Uint8Array(SIZE).map((_, i) => i & 0xff);
  return {
    async run() {
      const t0 = performance.now();
      await os.putBlob({ name: "v" }, value);
      const back = await os.getBlob("v");
      if (back?.length !== SIZE) throw new Error(`object store returned ${back?.length} bytes`);
      return performance.now() - t0;
    },
    close: () => nc.close(),
  };
}

export async function benchChunks(): Promise<Record<string, unknown>> {
  const server = await startNatsServer();
  const ns = "bench_chunks";
  try {
    const services = await getServices({ servers: server.url, namespace: ns });
    const svc = await TensorEcho.options({ services, numReplicas: 1, procs: 1, timeoutMs: 60_000 }).asService();
    const peer = await startChild(PEER, ["raw", server.url]);
    const raw = await rawRoundTrip(server.url);
    const obj = await objRoundTrip(server.url);
    const x = new Float32Array(SIZE / 4).map((_, i) => i % 1000);
    const viaActorbus = async () => {
      const t0 = performance.now();
      const y = await svc.echo(x);
      if (!(y instanceof Float32Array) || y.length !== x.length || y[999] !== 999) throw new Error("the echoed tensor differs");
      return performance.now() - t0;
    };
    // Warm-up, then interleaved rounds so that all three see the same machine.
    await viaActorbus();
    await raw();
    const ab: number[] = [];
    const rw: number[] = [];
    const ob: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      ab.push(await viaActorbus());
      rw.push(await raw());
      ob.push(await obj.run());
    }
    await obj.close();
    await peer.stop();
    await svc.shutdown();
    await services.close();
    const best = (xs: number[]) => Math.min(...xs);
    const out = {
      valueMB: SIZE / MB,
      actorbusMBps: rate(best(ab)),
      rawCoreChunksMBps: rate(best(rw)),
      objectStoreMBps: rate(best(ob)),
      vsRaw: ratio(best(rw), best(ab)),
      actorbusRoundTripMs: round(best(ab), 0),
    };
    printTable(`large values: 64 MB Float32Array in + 64 MB out through a service (MB/s of 128 MB per round trip, best of ${ROUNDS})`, [
      ["actorbus service (chunked)", out.actorbusMBps],
      ["raw core NATS, 1 MB chunks", out.rawCoreChunksMBps],
      ["raw @nats-io/obj put + get", out.objectStoreMBps],
      ["actorbus / raw core (>= 0.5)", out.vsRaw],
    ]);
    return out;
  } finally {
    await server.stop();
  }
}
