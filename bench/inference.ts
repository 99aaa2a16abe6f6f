/**
 * Inference benchmark (issue 5), each figure with its baseline from the same run:
 *   1. batching: 64 concurrent clients in 4 other processes over NATS, a policy costing 1 ms
 *      awaited per forward (an accelerator's launch + sync) plus an MLP 64->256->8 in plain
 *      TypeScript; requests/s with maxBatchSize 64 vs 1, p50/p99 latency, mean batch size.
 *   2. overhead per request of NatsTransport vs InProcessTransport (identity model).
 *   3. NatsTransport + InferenceServer vs raw nats.js request/reply (nc.request, noAsyncTraces)
 *      for the same payload and the same codec work, responder in another process.
 *   4. (issue 14) the setup of 1 with a weight update every 100 batches (weightSync: new MLP
 *      weights copied in between batches, version bumped) vs no updates: requests/s ratio, from
 *      alternating phases of one run.
 *   5. (issue 15) the same 64 clients against a model of exactly 1 ms per batch: requests/s as
 *      a fraction of the ideal 64 / 1 ms, mean batch size, and the raw nats.js floor of that
 *      loop (bench/inference-ideal.ts).
 *
 * This file is also its own child process: `node --import tsx bench/inference.ts <mode> ...`.
 */
import { connect } from "@nats-io/transport-node";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { connectBus, startNatsServer } from "../src/connection/index.ts";
import { InferenceServer, InProcessTransport, NatsTransport, type TensorBatch, type TensorRecord } from "../src/inference/index.ts";
import type { WeightSyncReceiver } from "../src/inference/weights.ts";
import { benchIdealRate } from "./inference-ideal.ts";
import { pipelined, printTable, ratio, round, sequential, startChild, summarize } from "./lib.ts";

const SELF = fileURLToPath(import.meta.url);
const NS = "bench_inf";
const OBS = 64;
const HIDDEN = 256;
const ACT = 8;
const CLIENT_PROCS = 4;
const CLIENTS_PER_PROC = 16;
const WARMUP_MS = 500;
const RUN_MS = 3_000;
const SEQ = 3_000;
const PIPE = 30_000;
const IN_FLIGHT = 64;
const UPDATE_EVERY_BATCHES = 100;
const WEIGHT_PHASES = 32;
const PHASE_MS = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function observation(seed: number): TensorRecord {
  return { observation: Float32Array.from({ length: OBS }, (_, i) => Math.sin(seed + i)) };
}

interface MlpParams {
  w1: Float32Array;
  b1: Float32Array;
  w2: Float32Array;
  b2: Float32Array;
}

function mlpParams(seed: number): MlpParams {
  let s = seed;
  const rand = () => ((s = (s * 16807) % 2147483647) / 2147483647 - 0.5) * 0.2;
  return {
    w1: Float32Array.from({ length: HIDDEN * OBS }, rand), // row j: weights into hidden unit j
    b1: Float32Array.from({ length: HIDDEN }, rand),
    w2: Float32Array.from({ length: ACT * HIDDEN }, rand),
    b2: Float32Array.from({ length: ACT }, rand),
  };
}

/**
 * The benchmark policy: 1 ms awaited per forward, then a 64->256->8 MLP over the whole batch.
 * Its parameters hang off the function, where `applyWeights` copies new ones in.
 */
function makePolicy() {
  const params = mlpParams(1);
  const { w1, b1, w2, b2 } = params;
  const h = new Float32Array(HIDDEN);
  const policy = async (batch: TensorBatch) => {
    await sleep(1);
    const n = batch.batchSize;
    const x = batch.data.observation as Float32Array;
    const action = new Float32Array(n * ACT);
    for (let b = 0; b < n; b++) {
      const xo = b * OBS;
      for (let j = 0; j < HIDDEN; j++) {
        let acc = b1[j]!;
        const wo = j * OBS;
        for (let i = 0; i < OBS; i++) acc += x[xo + i]! * w1[wo + i]!;
        h[j] = acc > 0 ? acc : 0;
      }
      for (let k = 0; k < ACT; k++) {
        let acc = b2[k]!;
        const wo = k * HIDDEN;
        for (let j = 0; j < HIDDEN; j++) acc += h[j]! * w2[wo + j]!;
        action[b * ACT + k] = acc;
      }
    }
    return { batchSize: n, data: { action }, shapes: { action: [n, ACT] } };
  };
  return Object.assign(policy, { params });
}

const applyMlp = (model: unknown, weights: unknown) => {
  const into = (model as { params: MlpParams }).params;
  const from = weights as MlpParams;
  into.w1.set(from.w1);
  into.b1.set(from.b1);
  into.w2.set(from.w2);
  into.b2.set(from.b2);
};

/** The overhead runs measure transports, not models: items in, the same items out. */
const identity = { model: async (items: unknown[]) => items, opts: { collate: (items: unknown[]) => items } };

interface RunReport {
  count: number;
  elapsedMs: number;
  latUs: number[];
}

export async function benchInference(): Promise<Record<string, unknown>> {
  const nats = await startNatsServer({ jetstream: false });
  const conn = await connectBus({ servers: nats.url });
  const children: Awaited<ReturnType<typeof startChild>>[] = [];
  try {
    // ---- 1. batching across processes -------------------------------------------------
    const procs = await Promise.all(Array.from({ length: CLIENT_PROCS }, () => startChild(SELF, ["clients", nats.url, NS, "policy", String(CLIENTS_PER_PROC)])));
    children.push(...procs);
    const runClients = async (durationMs = RUN_MS): Promise<{ requestsPerSecond: number; p50Ms: number; p99Ms: number }> => {
      for (const p of procs) p.child.stdin!.write(JSON.stringify({ warmupMs: WARMUP_MS, durationMs }) + "\n");
      const reports = await Promise.all(procs.map(async (p) => JSON.parse((await p.lines.next()).value as string) as RunReport));
      const total = reports.reduce((a, r) => a + r.count / (r.elapsedMs / 1000), 0);
      const { p50Ms, p99Ms } = summarize(reports.flatMap((r) => r.latUs.map((u) => u / 1000)));
      return { requestsPerSecond: Math.round(total), p50Ms: round(p50Ms, 3), p99Ms: round(p99Ms, 3) };
    };
    const batching = async (maxBatchSize: number) => {
      const server = new InferenceServer(makePolicy(), new NatsTransport({ connection: conn, namespace: NS, name: "policy" }), { maxBatchSize }).start();
      await server.ready();
      const r = await runClients();
      const stats = server.stats();
      await server.shutdown();
      return { ...r, meanBatchSize: round(stats.meanBatchSize, 1), p50ModelMs: round(stats.p50ModelMs, 3) };
    };
    const batch64 = await batching(64);
    const batch1 = await batching(1);

    // ---- 4. weight updates every 100 batches vs none (same clients, same policy) ---------
    // Separate runs on a shared machine differ by up to 10% from one to the next, more than
    // the 5% to be measured; phases of one run, in ABBA order, see the same drift.
    const weightPhases = async () => {
      let updating = false;
      let polls = 0;
      const sets = [mlpParams(7), mlpParams(11)];
      const trainer: WeightSyncReceiver<unknown, MlpParams> = {
        initOnReceiver() {},
        connect() {},
        // A saturated server polls once per batch: every 100th poll is every 100th batch.
        receive: () => (updating && ++polls % UPDATE_EVERY_BATCHES === 0 ? sets[(polls / UPDATE_EVERY_BATCHES) % 2] : undefined),
      };
      const transport = new NatsTransport({ connection: conn, namespace: NS, name: "policy" });
      const server = new InferenceServer(makePolicy(), transport, { maxBatchSize: 64, weightSync: trainer, applyWeights: applyMlp }).start();
      await server.ready();
      const clients = runClients(WEIGHT_PHASES * PHASE_MS + 1_000);
      await sleep(WARMUP_MS + 200);
      const phases: { updating: boolean; ms: number; requests: number; batches: number; weightUpdates: number }[] = [];
      for (let i = 0; i < WEIGHT_PHASES; i++) {
        updating = i % 4 === 1 || i % 4 === 2;
        const s0 = server.stats();
        const t0 = performance.now();
        await sleep(PHASE_MS);
        const s1 = server.stats();
        phases.push({ updating, ms: round(performance.now() - t0, 1), requests: s1.requests - s0.requests, batches: s1.batches - s0.batches, weightUpdates: s1.weightUpdates - s0.weightUpdates });
      }
      updating = false;
      await clients;
      await server.shutdown();
      return phases;
    };
    const phases = await weightPhases();
    const rate = (on: boolean) => {
      const ps = phases.filter((p) => p.updating === on);
      return Math.round(ps.reduce((a, p) => a + p.requests, 0) / (ps.reduce((a, p) => a + p.ms, 0) / 1000));
    };
    const updatePhases = phases.filter((p) => p.updating);
    const updatesDone = updatePhases.reduce((a, p) => a + p.weightUpdates, 0);
    const batchesPerUpdate = round(updatePhases.reduce((a, p) => a + p.batches, 0) / Math.max(1, updatesDone), 1);
    const weightRatio = ratio(rate(true), rate(false));
    await Promise.all(procs.map((p) => p.stop()));

    // ---- 5. fraction of the ideal rate, 1 ms fixed model cost (its own client processes) ----
    const idealRate = await benchIdealRate(nats.url, conn);
    const speedup = ratio(batch64.requestsPerSecond, batch1.requestsPerSecond);
    printTable(`inference: ${CLIENT_PROCS * CLIENTS_PER_PROC} clients in ${CLIENT_PROCS} processes over NATS; policy = 1 ms awaited + MLP ${OBS}->${HIDDEN}->${ACT}`, [
      ["maxBatchSize 64", `${batch64.requestsPerSecond} req/s, p50 ${batch64.p50Ms} ms, p99 ${batch64.p99Ms} ms, mean batch ${batch64.meanBatchSize}, model p50 ${batch64.p50ModelMs} ms`],
      ["maxBatchSize 1", `${batch1.requestsPerSecond} req/s, p50 ${batch1.p50Ms} ms, p99 ${batch1.p99Ms} ms, mean batch ${batch1.meanBatchSize}, model p50 ${batch1.p50ModelMs} ms`],
      ["speedup 64 vs 1", `${speedup}x (target >= 4x)`],
    ]);
    printTable(`inference with weight updates: same clients, policy and server (maxBatchSize 64, weightSync), ${WEIGHT_PHASES} phases of ${PHASE_MS} ms in ABBA order`, [
      ["no updates", `${rate(false)} req/s (receiver polled before every batch, returns nothing)`],
      [`update every ${UPDATE_EVERY_BATCHES} batches`, `${rate(true)} req/s, ${updatesDone} updates of ${(HIDDEN * OBS + HIDDEN + ACT * HIDDEN + ACT) * 4} bytes, ${batchesPerUpdate} batches per update`],
      ["ratio (target >= 0.95)", `${weightRatio}x`],
    ]);

    // ---- 2. NatsTransport vs InProcessTransport, same process, identity model -----------
    const input = observation(1);
    const inProc = new InProcessTransport();
    const inProcServer = new InferenceServer(identity.model, inProc, identity.opts).start();
    const inClient = inProc.client();
    const inSeq = await sequential(SEQ, () => inClient.call(input));
    const inPipe = await pipelined(PIPE, IN_FLIGHT, () => inClient.call(input));
    await inProcServer.shutdown();

    const serverConn = await connectBus({ servers: nats.url });
    const natsServer = new InferenceServer(identity.model, new NatsTransport({ connection: serverConn, namespace: NS, name: "echo-local" }), identity.opts).start();
    await natsServer.ready();
    const localClientT = new NatsTransport({ connection: conn, namespace: NS, name: "echo-local" });
    const localClient = localClientT.client();
    const natsLocalSeq = await sequential(SEQ, () => localClient.call(input));
    const natsLocalPipe = await pipelined(PIPE, IN_FLIGHT, () => localClient.call(input));
    await natsServer.shutdown();
    await localClientT.close();
    await serverConn.close();
    const usPerCall = (callsPerSec: number) => round(1e6 / callsPerSec, 1);
    printTable(`overhead per request, client and server in one process, ${OBS}-float observation, identity model`, [
      ["InProcessTransport", `${usPerCall(inSeq.callsPerSec)} us sequential (p50 ${round(inSeq.p50Ms * 1000, 1)} us), ${inPipe.callsPerSec} req/s with ${IN_FLIGHT} in flight`],
      ["NatsTransport", `${usPerCall(natsLocalSeq.callsPerSec)} us sequential (p50 ${round(natsLocalSeq.p50Ms * 1000, 1)} us), ${natsLocalPipe.callsPerSec} req/s with ${IN_FLIGHT} in flight`],
      ["NATS - in-process", `${round(usPerCall(natsLocalSeq.callsPerSec) - usPerCall(inSeq.callsPerSec), 1)} us per sequential request; throughput ratio ${ratio(inPipe.callsPerSec, natsLocalPipe.callsPerSec)}`],
    ]);

    // ---- 3. NatsTransport vs raw nats.js request/reply, responder in another process ---
    const raw = await startChild(SELF, ["raw", nats.url, "bench.inf.raw"]);
    children.push(raw);
    const nc = await connect({ servers: nats.url, noAsyncTraces: true });
    const codec = conn.codec;
    // Same codec work as NatsTransport: encode the record, decode the reply.
    const rawCall = async () => codec.decode((await nc.request("bench.inf.raw", codec.encode(input), { timeout: 30_000 })).data);
    const rawSeq = await sequential(SEQ, rawCall);
    const rawPipe = await pipelined(PIPE, IN_FLIGHT, rawCall);
    await nc.close();
    await raw.stop();

    const remote = await startChild(SELF, ["server", nats.url, NS, "echo"]);
    children.push(remote);
    const remoteT = new NatsTransport({ connection: conn, namespace: NS, name: "echo" });
    const remoteClient = remoteT.client();
    const natsSeq = await sequential(SEQ, () => remoteClient.call(input));
    const natsPipe = await pipelined(PIPE, IN_FLIGHT, () => remoteClient.call(input));
    await remoteT.close();
    await remote.stop();
    const seqRatio = ratio(natsSeq.p50Ms, rawSeq.p50Ms);
    const pipeRatio = ratio(rawPipe.callsPerSec, natsPipe.callsPerSec);
    printTable("NatsTransport + InferenceServer vs raw nats.js request/reply (noAsyncTraces), same payload, responder in another process", [
      ["raw nats.js", `sequential ${rawSeq.callsPerSec}/s p50 ${rawSeq.p50Ms} ms; ${rawPipe.callsPerSec}/s with ${IN_FLIGHT} in flight`],
      ["NatsTransport", `sequential ${natsSeq.callsPerSec}/s p50 ${natsSeq.p50Ms} ms; ${natsPipe.callsPerSec}/s with ${IN_FLIGHT} in flight`],
      ["ratio (target <= 1.2)", `sequential p50 ${seqRatio}x raw; pipelined raw/ours ${pipeRatio}x`],
    ]);

    return {
      policy: `1 ms awaited + MLP ${OBS}->${HIDDEN}->${ACT}`,
      clients: CLIENT_PROCS * CLIENTS_PER_PROC,
      clientProcesses: CLIENT_PROCS,
      batching: { maxBatchSize64: batch64, maxBatchSize1: batch1, speedup },
      idealRate,
      weightUpdates: {
        updateEveryBatches: UPDATE_EVERY_BATCHES,
        noUpdatesRequestsPerSecond: rate(false),
        withUpdatesRequestsPerSecond: rate(true),
        weightUpdates: updatesDone,
        batchesPerUpdate,
        ratio: weightRatio,
        phases,
      },
      overheadSameProcess: {
        inProcess: { usPerSequentialCall: usPerCall(inSeq.callsPerSec), sequential: inSeq, pipelined: inPipe },
        nats: { usPerSequentialCall: usPerCall(natsLocalSeq.callsPerSec), sequential: natsLocalSeq, pipelined: natsLocalPipe },
        natsMinusInProcessUs: round(usPerCall(natsLocalSeq.callsPerSec) - usPerCall(inSeq.callsPerSec), 1),
      },
      vsRawNats: {
        raw: { sequential: rawSeq, pipelined: rawPipe },
        natsTransport: { sequential: natsSeq, pipelined: natsPipe },
        sequentialP50Ratio: seqRatio,
        pipelinedThroughputRatioRawOverOurs: pipeRatio,
      },
    };
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    await conn.close();
    await nats.stop();
  }
}

// ---------------------------------------------------------------- child processes

/** Identity InferenceServer on NATS, as the responder of the raw comparison. */
async function serverChild(url: string, ns: string, name: string): Promise<void> {
  const connection = await connectBus({ servers: url });
  const server = new InferenceServer(identity.model, new NatsTransport({ connection, namespace: ns, name }), identity.opts).start();
  await server.ready();
  await untilStdinEnds();
  await server.shutdown();
  await connection.close();
}

/** The raw baseline responder: decode the request and encode the same reply NatsTransport sends. */
async function rawChild(url: string, subject: string): Promise<void> {
  const connection = await connectBus({ servers: url });
  const nc = connection.nc!;
  const codec = connection.codec;
  nc.subscribe(subject, {
    callback: (_err, msg) => {
      msg.respond(codec.encode([0, codec.decode(msg.data)]));
    },
  });
  await nc.flush();
  await untilStdinEnds();
  await connection.close();
}

/** `concurrency` closed-loop clients; one run per stdin line {warmupMs, durationMs}. */
async function clientsChild(url: string, ns: string, name: string, concurrency: number): Promise<void> {
  const connection = await connectBus({ servers: url });
  const client = new NatsTransport<TensorRecord, TensorRecord>({ connection, namespace: ns, name }).client();
  const inputs = Array.from({ length: concurrency }, (_, i) => observation(process.pid + i));
  process.stdout.write("ready\n");
  for await (const line of createInterface({ input: process.stdin })) {
    const { warmupMs, durationMs } = JSON.parse(line) as { warmupMs: number; durationMs: number };
    let measuring = false;
    let stop = false;
    let elapsedMs = 0;
    const latUs: number[] = [];
    await Promise.all([
      ...inputs.map(async (input) => {
        while (!stop) {
          const t0 = performance.now();
          await client.call(input);
          if (measuring) latUs.push(Math.round((performance.now() - t0) * 1000));
        }
      }),
      (async () => {
        await sleep(warmupMs);
        measuring = true;
        const start = performance.now();
        await sleep(durationMs);
        measuring = false;
        stop = true;
        elapsedMs = performance.now() - start;
      })(),
    ]);
    process.stdout.write(JSON.stringify({ count: latUs.length, elapsedMs, latUs } satisfies RunReport) + "\n");
  }
  await connection.close();
}

async function untilStdinEnds(): Promise<void> {
  process.stdout.write("ready\n");
  process.stdin.resume();
  await new Promise((r) => process.stdin.once("end", r).once("close", r));
}

if (process.argv[1] === SELF) {
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === "server") await serverChild(rest[0]!, rest[1]!, rest[2]!);
  else if (mode === "raw") await rawChild(rest[0]!, rest[1]!);
  else if (mode === "clients") await clientsChild(rest[0]!, rest[1]!, rest[2]!, Number(rest[3]));
  else {
    console.log(JSON.stringify(await benchInference(), null, 2));
    process.exit(0);
  }
}
