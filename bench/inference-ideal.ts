/**
 * Inference against its ideal rate (issue 15): 64 closed-loop clients (submit, await, repeat) in
 * 4 processes, one InferenceServer (this process) with maxBatchSize 64 and a model costing
 * exactly 1 ms per batch, whatever its size. The ideal is clients / per-batch model time
 * (64 / 1 ms = 64k requests/s): every batch full and nothing but the model between batches.
 *
 * The model busy-waits its 1 ms (a synchronous step that blocks the event loop, as a GPU-bound
 * forward that ends in a device sync does), rather than awaiting a 1 ms timer: timers overshoot,
 * and an awaited model would let the server read and answer while "computing".
 *
 * Baseline in the same run, rounds interleaved: the same loop in raw nats.js with no per-request
 * work at all. Each raw client process sends one message per turn carrying 16 requests' bytes
 * (what actorbus's coalescing sends) and waits for one reply; the responder answers whatever
 * arrived, after the same 1 ms busy-wait per turn. It is the most NATS, the scheduler and this
 * machine allow this topology, whatever the library.
 *
 * This file is also its own child process (the raw clients): `node --import tsx bench/inference-ideal.ts rawclients ...`.
 */
import { connect } from "@nats-io/transport-node";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { BusConnection } from "../src/connection/index.ts";
import { InferenceServer, NatsTransport, type TensorBatch } from "../src/inference/index.ts";
import { printTable, round, startChild, summarize } from "./lib.ts";

const SELF = fileURLToPath(import.meta.url);
const CLIENTS_SCRIPT = fileURLToPath(new URL("./inference.ts", import.meta.url));
const PROCS = 4;
const PER_PROC = 16;
const CLIENTS = PROCS * PER_PROC;
const MODEL_MS = 1;
const MAX_BATCH = 64;
const IDEAL = Math.round(CLIENTS / (MODEL_MS / 1000));
const ACT = 8;
/** Bytes of one request and one reply as NatsTransport sends them (64-float observation, 8-float action). */
const REQUEST_BYTES = 330;
const REPLY_BYTES = 61;
const ROUNDS = 5;
const ROUND_MS = 2_000;
const WARMUP_MS = 300;
/** The JIT of every process settles over the first seconds; nothing of them is counted. */
const WARM_ROUND_MS = 2_000;

/** Exactly `ms` of work per call, whatever the batch size. */
function busyWait(ms: number): void {
  const t0 = performance.now();
  while (performance.now() - t0 < ms);
}

function fixedCostModel(batch: TensorBatch) {
  busyWait(MODEL_MS);
  const n = batch.batchSize;
  return { batchSize: n, data: { action: new Float32Array(n * ACT) }, shapes: { action: [n, ACT] } };
}

interface ClientReport {
  count: number;
  elapsedMs: number;
  latUs: number[];
}

type Child = Awaited<ReturnType<typeof startChild>>;

/** One run of every client process; requests/s summed over processes, latency over all calls. */
async function run(procs: Child[], durationMs: number, perCall = 1) {
  for (const p of procs) p.child.stdin!.write(JSON.stringify({ warmupMs: WARMUP_MS, durationMs }) + "\n");
  const reports = await Promise.all(procs.map(async (p) => JSON.parse((await p.lines.next()).value as string) as ClientReport));
  const requestsPerSecond = reports.reduce((a, r) => a + (r.count * perCall) / (r.elapsedMs / 1000), 0);
  const { p50Ms, p99Ms } = summarize(reports.flatMap((r) => r.latUs.map((u) => u / 1000)));
  return { requestsPerSecond: Math.round(requestsPerSecond), p50Ms: round(p50Ms, 3), p99Ms: round(p99Ms, 3) };
}

/** The raw responder: what arrived is answered together after one busy-wait per turn. */
function rawResponder(nc: Awaited<ReturnType<typeof connect>>, subject: string) {
  const reply = new Uint8Array(PER_PROC * REPLY_BYTES);
  let pending: { respond(d: Uint8Array): boolean }[] = [];
  let turns = 0;
  let messages = 0;
  const turn = () => {
    busyWait(MODEL_MS);
    const answering = pending;
    pending = [];
    turns++;
    messages += answering.length;
    for (const m of answering) m.respond(reply);
  };
  const sub = nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err) return;
      pending.push(msg);
      // As the InferenceServer loop: the first request of an idle server starts a batch with
      // whatever else has arrived by then.
      if (pending.length === 1) setImmediate(turn);
    },
  });
  return {
    sub,
    /** Requests per model turn since the last call, and reset. */
    take() {
      const mean = turns ? (messages * PER_PROC) / turns : 0;
      turns = 0;
      messages = 0;
      return mean;
    },
  };
}

export async function benchIdealRate(url: string, conn: BusConnection): Promise<Record<string, unknown>> {
  const name = "ideal";
  const rawSubject = "bench.inf.ideal.raw";
  const server = new InferenceServer(fixedCostModel, new NatsTransport({ connection: conn, namespace: "bench_inf", name }), { maxBatchSize: MAX_BATCH }).start();
  await server.ready();
  const rawNc = await connect({ servers: url, noAsyncTraces: true });
  const raw = rawResponder(rawNc, rawSubject);
  await rawNc.flush();
  const ours: Child[] = [];
  const rawProcs: Child[] = [];
  try {
    ours.push(...(await Promise.all(Array.from({ length: PROCS }, () => startChild(CLIENTS_SCRIPT, ["clients", url, "bench_inf", name, String(PER_PROC)])))));
    rawProcs.push(...(await Promise.all(Array.from({ length: PROCS }, () => startChild(SELF, ["rawclients", url, rawSubject])))));
    await run(ours, WARM_ROUND_MS);
    await run(rawProcs, WARM_ROUND_MS, PER_PROC);
    const rounds: { actorbus: Record<string, number>; raw: Record<string, number> }[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      // Stats from the end of the clients' own warm-up, so both count the same stretch.
      const reset = setTimeout(() => server.stats({ reset: true }), WARMUP_MS);
      const a = await run(ours, ROUND_MS);
      clearTimeout(reset);
      const s = server.stats();
      raw.take();
      const r = await run(rawProcs, ROUND_MS, PER_PROC);
      rounds.push({
        actorbus: { ...a, meanBatchSize: round(s.batches ? s.requests / s.batches : 0, 1), p50ModelMs: round(s.p50ModelMs, 3) },
        raw: { ...r, meanBatchSize: round(raw.take(), 1) },
      });
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
    const med = (side: "actorbus" | "raw") => ({
      requestsPerSecond: median(rounds.map((r) => r[side].requestsPerSecond!)),
      meanBatchSize: median(rounds.map((r) => r[side].meanBatchSize!)),
      p50Ms: median(rounds.map((r) => r[side].p50Ms!)),
      p99Ms: median(rounds.map((r) => r[side].p99Ms!)),
    });
    const ab = med("actorbus");
    const rw = med("raw");
    const fraction = round(ab.requestsPerSecond / IDEAL, 3);
    const rawFraction = round(rw.requestsPerSecond / IDEAL, 3);
    const ofRaw = round(ab.requestsPerSecond / rw.requestsPerSecond, 3);
    const target = `>= 50% of ideal (${CLIENTS} clients / ${MODEL_MS} ms = ${IDEAL} req/s, so >= ${IDEAL / 2} req/s)`;
    printTable(`inference vs its ideal rate: ${CLIENTS} closed-loop clients in ${PROCS} processes, model = ${MODEL_MS} ms busy-wait per batch, maxBatchSize ${MAX_BATCH}; medians of ${ROUNDS} interleaved rounds of ${ROUND_MS} ms`, [
      ["ideal", `${IDEAL} req/s (every batch full, nothing but the model between batches)`],
      ["actorbus", `${ab.requestsPerSecond} req/s = ${fraction} of ideal, mean batch ${ab.meanBatchSize}, p50 ${ab.p50Ms} ms, p99 ${ab.p99Ms} ms`],
      ["raw nats.js floor", `${rw.requestsPerSecond} req/s = ${rawFraction} of ideal, mean batch ${rw.meanBatchSize}, p50 ${rw.p50Ms} ms (no per-request work at all)`],
      ["actorbus / raw floor", `${ofRaw}x`],
      [`target ${target}`, fraction >= 0.5 ? "met" : "NOT met"],
    ]);
    return {
      model: `${MODEL_MS} ms busy-wait per batch (synchronous, blocks the event loop like a GPU-bound forward ending in a device sync)`,
      clients: CLIENTS,
      clientProcesses: PROCS,
      maxBatchSize: MAX_BATCH,
      idealRequestsPerSecond: IDEAL,
      requestsPerSecond: ab.requestsPerSecond,
      fractionOfIdeal: fraction,
      meanBatchSize: ab.meanBatchSize,
      p50Ms: ab.p50Ms,
      p99Ms: ab.p99Ms,
      rawNatsFloor: { ...rw, fractionOfIdeal: rawFraction, note: "raw nats.js, 16 requests' bytes per message, responder answers what arrived after 1 ms busy-wait per turn, no per-request work" },
      ratioToRawFloor: ofRaw,
      target,
      met: fraction >= 0.5,
      rounds,
    };
  } finally {
    await Promise.all([...ours, ...rawProcs].map((c) => c.stop()));
    await server.shutdown();
    raw.sub.unsubscribe();
    await rawNc.close();
  }
}

/** Raw closed loop of one client process: one message of 16 requests' bytes per turn. */
async function rawClientsChild(url: string, subject: string): Promise<void> {
  const nc = await connect({ servers: url, noAsyncTraces: true });
  const payload = new Uint8Array(PER_PROC * REQUEST_BYTES);
  process.stdout.write("ready\n");
  for await (const line of createInterface({ input: process.stdin })) {
    const { warmupMs, durationMs } = JSON.parse(line) as { warmupMs: number; durationMs: number };
    let measuring = false;
    let stop = false;
    let elapsedMs = 0;
    const latUs: number[] = [];
    await Promise.all([
      (async () => {
        while (!stop) {
          const t0 = performance.now();
          await nc.request(subject, payload, { timeout: 30_000 });
          // Each of the 16 requests of the turn waited this long.
          if (measuring) latUs.push(Math.round((performance.now() - t0) * 1000));
        }
      })(),
      (async () => {
        await new Promise((r) => setTimeout(r, warmupMs));
        measuring = true;
        const start = performance.now();
        await new Promise((r) => setTimeout(r, durationMs));
        measuring = false;
        stop = true;
        elapsedMs = performance.now() - start;
      })(),
    ]);
    process.stdout.write(JSON.stringify({ count: latUs.length, elapsedMs, latUs } satisfies ClientReport) + "\n");
  }
  await nc.close();
}

if (process.argv[1] === SELF) {
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === "rawclients") await rawClientsChild(rest[0]!, rest[1]!);
  else {
    // Standalone: this scenario alone, e.g. while working on it (`npx tsx bench/inference-ideal.ts`).
    const { connectBus, startNatsServer } = await import("../src/connection/index.ts");
    const nats = await startNatsServer({ jetstream: false });
    const conn = await connectBus({ servers: nats.url });
    console.log(JSON.stringify(await benchIdealRate(nats.url, conn), null, 2));
    await conn.close();
    await nats.stop();
    process.exit(0);
  }
}
