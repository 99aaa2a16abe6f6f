/**
 * Service benchmark (issue 3), each figure with its baseline from the same run:
 *   1. routing cost: calls through the service router vs direct calls to the same replica
 *      process on its own subject (same codec and transport): calls/s, p50/p99, ratio.
 *   2. routing policy: least-loaded (default) vs the NATS queue group, 2 replicas of 4 slots,
 *      calls of mixed duration (90% 1 ms, 10% 25 ms) from 8 and 16 callers, rounds alternating:
 *      throughput and p99; and when the calls held by a killed replica fail under each policy.
 *   3. CPU-bound method (2 ms of hashing) with 1 vs 2 replicas: throughput ratio (2 cores).
 *   4. replica SIGKILL -> crash detected, and -> first successful call on the restarted replica.
 *   5. 16 MB of weights rolled to 4 replicas under a steady call load: time to all-updated, calls
 *      failed, call rate before vs during. Staged in 512 KiB chunks (fanout, each under the
 *      server's max_payload; values over it are issue 14 part 3), then committed by a rolling call;
 *      again with the commit spread over 160 ms per replica, to show the cost of the routing alone.
 * Replicas are child processes (the embedded default), like agent-spawned ones minus the hop.
 */
import { requestCall, unwrapReply } from "../src/actor/index.ts";
import { createCallIds } from "../src/call/index.ts";
import { startNatsServer } from "../src/connection/index.ts";
import { getServices, type Services } from "../src/registry/index.ts";
import type { ServiceProxy } from "../src/service/index.ts";
import { subjectsFor } from "../src/subjects/index.ts";
import { alternatingPipelined, alternatingSequential, pipelined, printTable, ratio, round, summarize } from "./lib.ts";
import { BenchCounter } from "./service-actor.ts";
import { BenchPolicy } from "./policy-actor.ts";

const SEQ = 3_000;
const PIPE = 30_000;
const IN_FLIGHT = 64;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await sleep(1);
  }
}

/** Mixed-duration calls from `lanes` concurrent callers: latencies. */
async function mixed(svc: ServiceProxy<BenchCounter>, total: number, lanes: number) {
  let started = 0;
  const lat: number[] = [];
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (started < total) {
        const i = started++;
        const s = performance.now();
        await svc.sleep(i % 10 === 9 ? 25 : 1);
        lat.push(performance.now() - s);
      }
    }),
  );
  return { lat };
}


/**
 * 40 calls of 200 ms in flight over 2 replicas (4 at a time each) when one replica is
 * SIGKILLed: how long until the calls it held have failed (the others finish normally).
 */
async function settleAfterKill(svc: ServiceProxy<BenchCounter>) {
  let t0 = 0;
  const failedAt: number[] = [];
  const calls = Array.from({ length: 40 }, () => svc.sleep(200).then(() => true, () => void failedAt.push(performance.now() - t0)));
  await sleep(50);
  t0 = performance.now();
  process.kill(svc.status().replicas[0]!.pids[0]!, "SIGKILL");
  await Promise.all(calls);
  return { failed: failedAt.length, of: calls.length, lastFailureMs: round(Math.max(0, ...failedAt), 1) };
}

const WEIGHT_BYTES = 16 * 1024 * 1024;
const CHUNK_FLOATS = (512 * 1024) / 4;
const LOAD_CALLERS = 16;
const ROLLS = 5;
const BIG_WEIGHT_BYTES = 256 * 1024 * 1024;
const BIG_ROLLS = 3;

/**
 * 16 MB of weights to 4 replicas while 16 callers keep calling: staged on every replica in
 * chunks, then committed replica by replica with a rolling update. Calls/s in a window before
 * each update, during it (staging + roll) and during the roll alone, summed over the rolls, and
 * every failure. Two series: the commit as fast as a copy goes (16 slices, a turn of the event
 * loop between), and spread over 16 x 10 ms per replica, where the roll lasts long enough for its
 * call rate to show what routing around the replica being updated costs.
 */
export async function rollUnderLoad(base: { services: Services; placement: "local" }) {
  const svc = await BenchPolicy.options({ ...base, meshName: "rolling", numReplicas: 4, maxConcurrency: 8, timeoutMs: 30_000 }).asService();
  try {
    let stopped = false;
    let ok = 0;
    let failed = 0;
    let lastError = "";
    const load = Promise.all(
      Array.from({ length: LOAD_CALLERS }, async () => {
        while (!stopped) {
          try {
            await svc.act(1);
            ok++;
          } catch (err) {
            failed++;
            lastError = String(err);
          }
        }
      }),
    );
    await sleep(500); // warm-up
    const weights = new Float32Array(WEIGHT_BYTES / 4).map((_, i) => Math.sin(i));
    let version = 0;

    const series = async (sliceMs: number) => {
      // Calls and milliseconds per phase, summed over the rolls: each roll has its own window
      // before it, so a shift in the machine's load hits both sides alike.
      const phases = { before: { calls: 0, ms: 0 }, update: { calls: 0, ms: 0 }, roll: { calls: 0, ms: 0 } };
      const count = (phase: keyof typeof phases, n0: number, t0: number) => {
        phases[phase].calls += ok - n0;
        phases[phase].ms += performance.now() - t0;
      };
      const rolls: { stageMs: number; rollMs: number; totalMs: number }[] = [];
      for (let i = 0; i < ROLLS; i++) {
        const nb = ok;
        const tb = performance.now();
        await sleep(500);
        count("before", nb, tb);
        const n0 = ok;
        const t0 = performance.now();
        for (let at = 0; at < weights.length; at += CHUNK_FLOATS) await svc.stage.fanout(weights.length, at, weights.subarray(at, at + CHUNK_FLOATS));
        const t1 = performance.now();
        const n1 = ok;
        const done = await svc.commit.rolling(++version, sliceMs);
        const t2 = performance.now();
        count("update", n0, t0);
        count("roll", n1, t1);
        if (done.length !== 4 || done.some((v) => v !== version)) throw new Error(`roll to ${version} ended at ${done.join(",")}`);
        rolls.push({ stageMs: round(t1 - t0, 1), rollMs: round(t2 - t1, 1), totalMs: round(t2 - t0, 1) });
      }
      const mean = (k: keyof (typeof rolls)[number]) => round(rolls.reduce((a, r) => a + r[k], 0) / rolls.length, 1);
      const rate = (phase: keyof typeof phases) => Math.round(phases[phase].calls / (phases[phase].ms / 1000));
      return {
        commitSliceMs: sliceMs,
        rolls,
        timeToAllUpdatedMs: mean("totalMs"),
        stageMs: mean("stageMs"),
        rollMs: mean("rollMs"),
        callsPerSecBefore: rate("before"),
        callsPerSecDuring: rate("update"),
        callsPerSecDuringRoll: rate("roll"),
        rateRatioDuring: ratio(rate("update"), rate("before")),
        rateRatioDuringRoll: ratio(rate("roll"), rate("before")),
      };
    };
    const fast = await series(0);
    const spread = await series(10);
    // Issue 14's figure: 256 MB as the rolling call's argument, encoded once, each replica pulling
    // it in chunks from the caller while it is out of routing.
    const big = new Float32Array(BIG_WEIGHT_BYTES / 4).map((_, i) => Math.cos(i));
    const asArgument = { rolls: [] as number[], callsPerSecBefore: 0, callsPerSecDuringRoll: 0, rateRatioDuringRoll: 0, timeToAllUpdatedMs: 0 };
    {
      let before = { calls: 0, ms: 0 };
      let during = { calls: 0, ms: 0 };
      for (let i = 0; i < BIG_ROLLS; i++) {
        const nb = ok;
        const tb = performance.now();
        await sleep(500);
        before = { calls: before.calls + ok - nb, ms: before.ms + performance.now() - tb };
        const n0 = ok;
        const t0 = performance.now();
        const done = await svc.load.rolling(big, ++version);
        const ms = performance.now() - t0;
        during = { calls: during.calls + ok - n0, ms: during.ms + ms };
        if (done.length !== 4 || done.some((v) => v !== version)) throw new Error(`roll to ${version} ended at ${done.join(",")}`);
        asArgument.rolls.push(round(ms, 1));
      }
      asArgument.callsPerSecBefore = Math.round(before.calls / (before.ms / 1000));
      asArgument.callsPerSecDuringRoll = Math.round(during.calls / (during.ms / 1000));
      asArgument.rateRatioDuringRoll = ratio(asArgument.callsPerSecDuringRoll, asArgument.callsPerSecBefore);
      asArgument.timeToAllUpdatedMs = round(asArgument.rolls.reduce((a, b) => a + b, 0) / asArgument.rolls.length, 1);
    }
    stopped = true;
    await load;
    return {
      weightsMB: WEIGHT_BYTES / 2 ** 20,
      replicas: 4,
      callers: LOAD_CALLERS,
      chunkKiB: (CHUNK_FLOATS * 4) / 1024,
      ...fast,
      spreadCommit: spread,
      weightsAsArgument: { weightsMB: BIG_WEIGHT_BYTES / 2 ** 20, ...asArgument },
      callsFailed: failed,
      lastError,
      versionsAfter: svc.status().replicas.map((r) => r.version),
      target: "0 calls failed",
    };
  } finally {
    await svc.shutdown();
  }
}

export async function benchService(): Promise<Record<string, unknown>> {
  const server = await startNatsServer();
  const namespace = "bench_svc";
  let services: Services | undefined;
  try {
    services = await getServices({ servers: server.url, namespace });
    const { codec, transport } = services.connection;
    const base = { services, placement: "local" as const };

    // 1. Router vs direct calls to the same replica process.
    const one = await BenchCounter.options({ ...base, meshName: "routing", maxConcurrency: IN_FLIGHT }).asService();
    const subjects = subjectsFor(namespace);
    const subject = subjects.replica(one.status().replicas[0]!.groupId, 0);
    const ids = createCallIds();
    // What a handle sends, straight to the replica's own subject: no router, no forwarder.
    const direct = () =>
      requestCall(transport, subjects, subject, codec.encode([1]), { method: "incr", callId: ids(), deadline: Date.now() + 30_000, meta: undefined, signal: undefined }).then((b) =>
        unwrapReply(codec, b),
      );
    const routed = () => one.incr(1);
    const { a: directSeq, b: routedSeq } = await alternatingSequential(SEQ, direct, routed);
    const { a: directPipe, b: routedPipe } = await alternatingPipelined(10, PIPE / 10, IN_FLIGHT, direct, routed);
    // Any worker's registry handle: it follows the controller's route table and sends each call
    // straight to a replica (src/registry/direct-routes.ts). 64 in flight (issue 12's figure).
    const viaRegistry = await services.get<BenchCounter>("routing");
    const registry = () => viaRegistry.incr(1);
    const { a: direct64, b: registry64 } = await alternatingPipelined(10, PIPE / 10, 64, direct, registry);
    await one.shutdown();

    // 2. Least-loaded vs queue group on mixed call durations, then a crash under each.
    type PolicyRun = { callsPerSec: number; p50Ms: number; p99Ms: number };
    const policy: Record<string, Record<string, PolicyRun> | { lastFailureMs: number; failed: number; of: number }> = {};
    const two: Record<string, ServiceProxy<BenchCounter>> = {};
    for (const routing of ["least-loaded", "queue-group"] as const) {
      two[routing] = await BenchCounter.options({ ...base, meshName: `policy-${routing}`, numReplicas: 2, maxConcurrency: 4, routing, timeoutMs: 5_000 }).asService();
      await mixed(two[routing]!, 200, 8); // warm-up
    }
    // 8 callers fill the 2 x 4 slots exactly; 16 oversubscribe them. Rounds alternate policies.
    for (const lanes of [8, 16]) {
      const acc: Record<string, { lat: number[]; ms: number; n: number }> = {};
      for (let round = 0; round < 4; round++) {
        for (const routing of ["least-loaded", "queue-group"]) {
          const a = (acc[routing] ??= { lat: [], ms: 0, n: 0 });
          const t0 = performance.now();
          a.lat.push(...(await mixed(two[routing]!, 1_000, lanes)).lat);
          a.ms += performance.now() - t0;
          a.n += 1_000;
        }
      }
      policy[`callers${lanes}`] = Object.fromEntries(
        Object.entries(acc).map(([k, a]) => [k, { callsPerSec: Math.round(a.n / (a.ms / 1000)), ...summarize(a.lat) }]),
      );
    }
    for (const routing of ["least-loaded", "queue-group"]) {
      policy[`crash-${routing}`] = await settleAfterKill(two[routing]!);
      await two[routing]!.shutdown();
    }
    const c8 = policy.callers8 as Record<string, PolicyRun>;
    const c16 = policy.callers16 as Record<string, PolicyRun>;
    const crashLL = policy["crash-least-loaded"] as { lastFailureMs: number; failed: number };
    const crashQG = policy["crash-queue-group"] as { lastFailureMs: number; failed: number };

    // 3. CPU-bound: 2 ms of hashing per call, 1 vs 2 replicas (one call at a time each).
    const cpuSvc = [
      await BenchCounter.options({ ...base, meshName: "cpu1", numReplicas: 1 }).asService(),
      await BenchCounter.options({ ...base, meshName: "cpu2", numReplicas: 2 }).asService(),
    ];
    for (const s of cpuSvc) await pipelined(100, 8, () => s.hash(2));
    const cpuMs = [0, 0];
    for (let round = 0; round < 3; round++) {
      for (const [i, s] of cpuSvc.entries()) {
        const t0 = performance.now();
        await pipelined(500, 8, () => s.hash(2));
        cpuMs[i]! += performance.now() - t0;
      }
    }
    for (const s of cpuSvc) await s.shutdown();
    const cpu = { replicas1: Math.round(1_500 / (cpuMs[0]! / 1000)), replicas2: Math.round(1_500 / (cpuMs[1]! / 1000)) };

    // 4. SIGKILL -> detected; -> first successful call served by the restarted replica.
    const crashy = await BenchCounter.options({ ...base, meshName: "crash", maxRestarts: 10, stableMs: 0 }).asService();
    const detect: number[] = [];
    const recover: number[] = [];
    for (let i = 0; i < 5; i++) {
      await crashy.incr();
      const t0 = performance.now();
      process.kill(crashy.status().replicas[0]!.pids[0]!, "SIGKILL");
      await until(() => crashy.status().replicas[0]!.state !== "healthy", 5_000);
      detect.push(performance.now() - t0);
      await crashy.incr(); // waits for the restart
      recover.push(performance.now() - t0);
    }
    await crashy.shutdown();

    // 5. Weights rolled to 4 replicas under load.
    const rolling = await rollUnderLoad(base);

    const figures = {
      routing: {
        direct: { sequential: directSeq, pipelined: directPipe },
        routed: { sequential: routedSeq, pipelined: routedPipe },
        registryRouted64: { direct: direct64, registry: registry64, ratio: ratio(registry64.callsPerSec, direct64.callsPerSec), target: ">= 0.85x direct at 64 in flight" },
        ratios: {
          sequentialThroughput: ratio(routedSeq.callsPerSec, directSeq.callsPerSec),
          pipelinedThroughput: ratio(routedPipe.callsPerSec, directPipe.callsPerSec),
          p50Latency: ratio(routedSeq.p50Ms, directSeq.p50Ms),
          p99Latency: ratio(routedSeq.p99Ms, directSeq.p99Ms),
        },
        target: "routing costs <= 10% (throughput ratio >= 0.9)",
      },
      policy: {
        ...policy,
        ratios: {
          throughputLeastLoadedVsQueueGroup8: ratio(c8["least-loaded"]!.callsPerSec, c8["queue-group"]!.callsPerSec),
          p99QueueGroupVsLeastLoaded8: ratio(c8["queue-group"]!.p99Ms, c8["least-loaded"]!.p99Ms),
          throughputLeastLoadedVsQueueGroup16: ratio(c16["least-loaded"]!.callsPerSec, c16["queue-group"]!.callsPerSec),
          p99QueueGroupVsLeastLoaded16: ratio(c16["queue-group"]!.p99Ms, c16["least-loaded"]!.p99Ms),
        },
      },
      cpuBound: { ...cpu, ratio: ratio(cpu.replicas2, cpu.replicas1), target: ">= 1.7x on 2 cores" },
      crash: { detectMs: summarize(detect), firstSuccessfulCallMs: summarize(recover), restartBackoffMs: 100, samples: detect.length },
      rolling,
    };
    printTable("service: routed calls vs direct calls to the same replica process", [
      ["direct sequential calls/s", `${directSeq.callsPerSec}  p50 ${directSeq.p50Ms} ms  p99 ${directSeq.p99Ms} ms`],
      ["routed sequential calls/s", `${routedSeq.callsPerSec}  p50 ${routedSeq.p50Ms} ms  p99 ${routedSeq.p99Ms} ms`],
      [`direct pipelined calls/s (${IN_FLIGHT} in flight)`, directPipe.callsPerSec],
      [`routed pipelined calls/s (${IN_FLIGHT} in flight)`, routedPipe.callsPerSec],
      ["ratio sequential throughput (>= 0.9)", figures.routing.ratios.sequentialThroughput],
      ["ratio pipelined throughput (>= 0.9)", figures.routing.ratios.pipelinedThroughput],
      ["ratio p50 latency", figures.routing.ratios.p50Latency],
      ["registry handle (route table, straight to the replica) vs direct, 64 in flight", `${registry64.callsPerSec} vs ${direct64.callsPerSec} calls/s = ${figures.routing.registryRouted64.ratio}x (>= 0.85)`],
    ]);
    const fmt = (r: PolicyRun) => `${r.callsPerSec} calls/s  p50 ${r.p50Ms} ms  p99 ${r.p99Ms} ms`;
    printTable("service: least-loaded vs queue group (2 replicas x 4 slots, 90% 1 ms / 10% 25 ms calls)", [
      ["8 callers, least-loaded", fmt(c8["least-loaded"]!)],
      ["8 callers, queue group", fmt(c8["queue-group"]!)],
      ["8 callers: throughput ratio, p99 ratio (qg/ll)", `${figures.policy.ratios.throughputLeastLoadedVsQueueGroup8}x, ${figures.policy.ratios.p99QueueGroupVsLeastLoaded8}x`],
      ["16 callers, least-loaded", fmt(c16["least-loaded"]!)],
      ["16 callers, queue group", fmt(c16["queue-group"]!)],
      ["16 callers: throughput ratio, p99 ratio (qg/ll)", `${figures.policy.ratios.throughputLeastLoadedVsQueueGroup16}x, ${figures.policy.ratios.p99QueueGroupVsLeastLoaded16}x`],
      ["replica killed: its calls failed after (least-loaded)", `${crashLL.lastFailureMs} ms (${crashLL.failed} calls, ReplicaCrashedError)`],
      ["replica killed: its calls failed after (queue group)", `${crashQG.lastFailureMs} ms (${crashQG.failed} calls, at their 5 s deadline)`],
    ]);
    printTable("service: CPU-bound method (2 ms hashing), 1 vs 2 replicas", [
      ["1 replica calls/s", cpu.replicas1],
      ["2 replicas calls/s", cpu.replicas2],
      ["ratio (>= 1.7 on 2 cores)", figures.cpuBound.ratio],
    ]);
    printTable("service: replica SIGKILL (restartBackoffMs 100)", [
      ["crash detected, p50/max ms", `${figures.crash.detectMs.p50Ms} / ${round(Math.max(...detect), 1)}`],
      ["first successful call on the restarted replica, p50/max ms", `${figures.crash.firstSuccessfulCallMs.p50Ms} / ${round(Math.max(...recover), 1)}`],
    ]);
    printTable(`service: ${rolling.weightsMB} MB of weights rolled to 4 replicas under ${LOAD_CALLERS} steady callers (${rolling.rolls.length} rolls)`, [
      ["time to all-updated ms (stage in chunks + roll)", `${rolling.timeToAllUpdatedMs} (${rolling.stageMs} + ${rolling.rollMs})`],
      ["calls failed (must be 0)", rolling.callsFailed],
      ["calls/s before", rolling.callsPerSecBefore],
      ["calls/s during the update, ratio", `${rolling.callsPerSecDuring}, ${rolling.rateRatioDuring}x`],
      ["calls/s during the roll alone, ratio", `${rolling.callsPerSecDuringRoll}, ${rolling.rateRatioDuringRoll}x`],
      ["commit spread over 160 ms per replica: roll ms, calls/s during it, ratio", `${rolling.spreadCommit.rollMs}, ${rolling.spreadCommit.callsPerSecDuringRoll}, ${rolling.spreadCommit.rateRatioDuringRoll}x`],
      [`${rolling.weightsAsArgument.weightsMB} MB as the roll's argument (svc.load.rolling(weights, v)): time to all-updated ms`, rolling.weightsAsArgument.timeToAllUpdatedMs],
      [`${rolling.weightsAsArgument.weightsMB} MB roll: calls/s before, during, ratio`, `${rolling.weightsAsArgument.callsPerSecBefore}, ${rolling.weightsAsArgument.callsPerSecDuringRoll}, ${rolling.weightsAsArgument.rateRatioDuringRoll}x`],
    ]);
    return figures;
  } finally {
    await services?.close();
    await server.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await benchService();
}
