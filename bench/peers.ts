/**
 * actorbus calls against its peers on the same payload, rounds interleaved: raw nats.js request
 * (noAsyncTraces, its fastest setting) and Moleculer 0.15 over its NATS transporter. One client
 * here and one host process each, sequential and 256 in flight; then n:n (4 client processes x 2
 * host processes, aggregate calls/s); then the memory of 10k calls in flight.
 */
import { connect } from "@nats-io/transport-node";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { createCodec, getServices } from "../src/index.ts";
import { interleavedPipelined, interleavedSequential, printTable, ratio, round, startChild } from "./lib.ts";
import { moleculerClient } from "./moleculer.ts";

const PEER = fileURLToPath(new URL("./core-peer.ts", import.meta.url));
const NN_CLIENT = fileURLToPath(new URL("./nn-client.ts", import.meta.url));
const SEQ = 3_000;
const ROUNDS = 6;
const PER_ROUND = 20_000;
const IN_FLIGHT = 256;
const NN_CLIENTS = 4;
const NN_HOSTS = 2;
const NN_CALLS = 40_000;
const HELD = 10_000;

type System = "raw" | "actorbus" | "moleculer";
const SYSTEMS: System[] = ["raw", "actorbus", "moleculer"];

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

export async function benchPeers(url: string) {
  const payload = { text: "hello world", ids: [1, 2, 3, 4, 5, 6, 7, 8], step: 42 };
  const ns = "bench_peers";
  const hosts = {
    raw: await startChild(PEER, ["raw", url]),
    actorbus: await startChild(PEER, ["actor", url, ns, "--holder"]),
    moleculer: await startChild(PEER, ["moleculer", url]),
  };
  const nc = await connect({ servers: url, noAsyncTraces: true });
  const bytes = createCodec().encode([payload]);
  const services = await getServices({ servers: url, namespace: ns });
  const echo = await services.get<{ echo(v: unknown): unknown }>("echo");
  const mol = await moleculerClient(url);
  const calls: Record<System, () => Promise<unknown>> = {
    raw: () => nc.request("bench.raw", bytes, { timeout: 30_000 }),
    actorbus: () => echo.echo(payload) as Promise<unknown>,
    moleculer: () => mol.call(payload),
  };
  const seq = await interleavedSequential(SEQ, calls);
  const pipe = await interleavedPipelined(ROUNDS, PER_ROUND, IN_FLIGHT, calls);
  const memory = await heldMemory(services);
  await mol.stop();
  await services.close();
  await nc.close();
  for (const h of Object.values(hosts)) await h.stop();

  const nn: Record<System, number> = { raw: 0, actorbus: 0, moleculer: 0 };
  for (let r = 0; r < 2; r++) for (const s of SYSTEMS) nn[s] += (await nToN(s, url, `${ns}_nn${r}`)) / 2;

  const figures = {
    payloadBytes: bytes.length,
    sequential: seq,
    pipelined: pipe,
    nToN: { clients: NN_CLIENTS, hosts: NN_HOSTS, inFlightPerClient: IN_FLIGHT, callsPerSec: mapValues(nn, Math.round) },
    memoryPer10kInFlight: memory,
    ratios: {
      pipelinedVsRaw: ratio(pipe.actorbus.callsPerSec, pipe.raw.callsPerSec),
      pipelinedVsMoleculer: ratio(pipe.actorbus.callsPerSec, pipe.moleculer.callsPerSec),
      sequentialP50VsRaw: ratio(seq.actorbus.p50Ms, seq.raw.p50Ms),
      sequentialThroughputVsRaw: ratio(seq.actorbus.callsPerSec, seq.raw.callsPerSec),
      sequentialP50VsMoleculer: ratio(seq.actorbus.p50Ms, seq.moleculer.p50Ms),
      nToNVsRaw: ratio(nn.actorbus, nn.raw),
      nToNVsMoleculer: ratio(nn.actorbus, nn.moleculer),
    },
    targets: { pipelinedVsRawAtLeast: 2, pipelinedVsMoleculerAtLeast: 2.5, sequentialP50VsRawAtMost: 1, nToNVsRawAtLeast: 1.5 },
  };
  printTable("core: actorbus vs raw nats.js request and Moleculer 0.15 (NATS), rounds interleaved", [
    ...SYSTEMS.map((s): [string, string] => [`${s} sequential`, `${seq[s].callsPerSec}/s  p50 ${seq[s].p50Ms} ms  p99 ${seq[s].p99Ms} ms`]),
    ...SYSTEMS.map((s): [string, string] => [`${s} pipelined (${IN_FLIGHT} in flight)`, `${pipe[s].callsPerSec}/s`]),
    ...SYSTEMS.map((s): [string, string] => [`${s} n:n (${NN_CLIENTS} clients x ${NN_HOSTS} hosts)`, `${Math.round(nn[s])}/s`]),
    ["pipelined vs raw (>= 2x)", figures.ratios.pipelinedVsRaw],
    ["pipelined vs Moleculer (>= 2.5x)", figures.ratios.pipelinedVsMoleculer],
    ["sequential p50 vs raw (<= 1.0x)", figures.ratios.sequentialP50VsRaw],
    ["n:n vs raw (>= 1.5x)", figures.ratios.nToNVsRaw],
    [`memory per ${HELD} calls in flight`, `caller heap ${memory.caller.heapMB} MB rss ${memory.caller.rssMB} MB; host heap ${memory.host.heapMB} MB rss ${memory.host.rssMB} MB`],
  ]);
  return figures;
}

function mapValues<T extends Record<string, number>>(o: T, f: (n: number) => number): T {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)])) as T;
}

/** Aggregate calls/s of NN_CLIENTS client processes against NN_HOSTS host processes. */
export async function nToN(system: System, url: string, ns: string): Promise<number> {
  const hostMode = system === "actorbus" ? "actor" : system;
  const hosts = await Promise.all(Array.from({ length: NN_HOSTS }, () => startChild(PEER, [hostMode, url, ns])));
  const clients = await Promise.all(Array.from({ length: NN_CLIENTS }, () => startChild(NN_CLIENT, [system, url, ns, String(IN_FLIGHT), String(NN_CALLS)])));
  for (const c of clients) c.child.stdin!.write("go\n");
  const rates = await Promise.all(clients.map(async (c) => JSON.parse(String((await c.lines.next()).value)).callsPerSec as number));
  for (const c of clients) await c.stop();
  for (const h of hosts) await h.stop();
  return rates.reduce((a, b) => a + b, 0);
}

/** Heap and RSS grown by HELD calls waiting in the host, in the caller and in the host. */
async function heldMemory(services: Awaited<ReturnType<typeof getServices>>) {
  const holder = await services.get<{ hold(): Promise<void>; release(): void; memory(): NodeJS.MemoryUsage }>("holder", { timeoutMs: 60_000 });
  const measure = async () => {
    gc();
    return { caller: process.memoryUsage(), host: await holder.memory() };
  };
  const before = await measure();
  const held = Array.from({ length: HELD }, () => holder.hold());
  // Every call has reached the host once a call behind them is answered (one mailbox, in order).
  const during = await measure();
  await holder.release();
  await Promise.all(held);
  const mb = (n: number) => round(n / 2 ** 20, 1);
  const delta = (a: NodeJS.MemoryUsage, b: NodeJS.MemoryUsage) => ({ heapMB: mb(b.heapUsed - a.heapUsed), rssMB: mb(b.rss - a.rss) });
  return { calls: HELD, caller: delta(before.caller, during.caller), host: delta(before.host, during.host) };
}
