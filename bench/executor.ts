/**
 * Python executor benchmark (issues 4 and 15), each figure with its baseline from the same run:
 *   1. latency of trivial code: through the shared service (registry on NATS) and through a local
 *      persistent process, with a plain actorbus call of the same payload as reference, in
 *      interleaved rounds, two ways: back to back (each system runs a block of calls in turn:
 *      the local interpreter never idles, its best case) and call by call (one call of each in
 *      turn: every interpreter idles between its calls, as in an agent loop); figures are medians
 *      over rounds; the service/local ratio (issue 15 target: <= 3x). Then vs a fresh
 *      `python3 -c` per call (TorchRL's temporary mode, no sandbox) and vs our sandboxed
 *      temporary mode; the speedup ratios (issue 4 target >= 50x).
 *   2. 128 concurrent sessions, each running its own stateful code, on pools of 8 and 32:
 *      executions/s, directly and through the service on NATS.
 *   3. memory: total RSS of a 32-interpreter pool serving 128 sessions vs 128 local persistent
 *      interpreters (one per environment); RSS per interpreter. RSS from /proc/<pid>/status.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { startNatsServer } from "../src/connection/index.ts";
import { PythonExecutorService, PythonInterpreter } from "../src/executor/index.ts";
import { rssOf } from "../src/executor/sandbox.ts";
import { getServices } from "../src/registry/index.ts";
import { printTable, ratio, round, summarize } from "./lib.ts";

const TRIVIAL = "x = 1 + 1";
/** Issue 15: p50 of trivial code through the service over NATS <= this many times the local persistent interpreter's. */
const SERVICE_VS_LOCAL_TARGET = 3;
const ROUNDS = 9;
const CALLS_PER_ROUND = 300;
const SESSIONS = 128;
const CALLS_PER_SESSION = 20;
const MIB = 1024 * 1024;

/** The reference for the service's own cost: a plain actorbus call carrying the same code string. */
class Echo {
  echo(code: string) {
    return code;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * ROUNDS rounds of CALLS_PER_ROUND sequential calls per system, so that load from other
 * processes (2 shared cores) falls on all of them alike. "blocks": each system runs its calls
 * back to back, the systems in a rotating order; "calls": one call of each system in turn. Per
 * system: the median of its per-round p50s (and p99 over all samples); ratios are taken within
 * each round, then their median.
 */
async function interleavedRounds<K extends string>(mode: "blocks" | "calls", systems: Record<K, () => Promise<unknown>>) {
  const names = Object.keys(systems) as K[];
  for (const k of names) for (let i = 0; i < 500; i++) await systems[k](); // JIT, connections, warm interpreters
  const p50s = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  const all = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  const timed = async (k: K, into: number[]) => {
    const t = performance.now();
    await systems[k]();
    into.push(performance.now() - t);
  };
  for (let r = 0; r < ROUNDS; r++) {
    const lat = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<K, number[]>;
    if (mode === "blocks") {
      for (let j = 0; j < names.length; j++) {
        const k = names[(r + j) % names.length]!;
        for (let i = 0; i < CALLS_PER_ROUND; i++) await timed(k, lat[k]);
      }
    } else {
      for (let i = 0; i < CALLS_PER_ROUND; i++) for (const k of names) await timed(k, lat[k]);
    }
    for (const k of names) {
      p50s[k].push(summarize(lat[k]).p50Ms);
      all[k].push(...lat[k]);
    }
  }
  const figures = Object.fromEntries(names.map((k) => [k, { p50Ms: round(median(p50s[k]), 4), p99Ms: summarize(all[k]).p99Ms, roundP50sMs: p50s[k] }])) as Record<
    K,
    { p50Ms: number; p99Ms: number; roundP50sMs: number[] }
  >;
  const ratioOf = (a: K, b: K) => round(median(p50s[a].map((x, i) => x / p50s[b][i]!)), 3);
  return { figures, ratioOf };
}

/** One mode's figures with the service/local ratios and the issue-15 verdict. */
function againstLocal({ figures: f, ratioOf }: Awaited<ReturnType<typeof interleavedRounds<"local" | "service" | "serviceSession" | "plainCall">>>) {
  const serviceVsLocal = ratioOf("service", "local");
  return {
    ...f,
    serviceVsLocal,
    serviceWithSessionVsLocal: ratioOf("serviceSession", "local"),
    targetMet: serviceVsLocal <= SERVICE_VS_LOCAL_TARGET,
    // What the service costs beyond a plain call plus the local execution.
    serviceOverPlainCallPlusLocalMs: round(f.service.p50Ms - f.plainCall.p50Ms - f.local.p50Ms, 4),
  };
}

async function latency(n: number, call: () => Promise<unknown>, warmup = 20) {
  for (let i = 0; i < warmup; i++) await call();
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await call();
    lat.push(performance.now() - t);
  }
  return summarize(lat);
}

/** 128 sessions at once, each doing CALLS_PER_SESSION stateful executions in order. */
async function sessionsThroughput(execute: (code: string, sessionId: string) => Promise<{ success: boolean }>) {
  const ids = Array.from({ length: SESSIONS }, (_, i) => `env-${i}`);
  await Promise.all(ids.map((id) => execute("n = 0", id))); // place the sessions
  let failures = 0;
  const t0 = performance.now();
  await Promise.all(
    ids.map(async (id) => {
      for (let i = 0; i < CALLS_PER_SESSION; i++) if (!(await execute("n += 1", id)).success) failures++;
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  return { executionsPerSec: Math.round((SESSIONS * CALLS_PER_SESSION) / secs), failures };
}

export async function benchExecutor(): Promise<Record<string, unknown>> {
  const nats = await startNatsServer();
  const services = await getServices({ backend: "nats", namespace: "bench_py", servers: nats.url });
  const figures: Record<string, unknown> = {};
  try {
    // 1. latency ---------------------------------------------------------------------------
    await services.registerWithOptions("python_executor", PythonExecutorService, { maxConcurrency: 1024 }, { poolSize: 2 });
    await services.registerWithOptions("echo", Echo, { maxConcurrency: 1024 });
    const shared = await services.get<PythonExecutorService>("python_executor");
    const echo = await services.get<Echo>("echo");
    // The baseline runs the very interpreter the pool runs (the sandbox may pick another than PATH's).
    const python = (await shared.ready()).sandbox.python;
    const local = new PythonInterpreter({ services: null, persistent: true });
    const systems = {
      local: () => local.execute(TRIVIAL, { sessionId: "lat" }),
      service: () => shared.execute(TRIVIAL),
      serviceSession: () => shared.execute(TRIVIAL, { sessionId: "lat" }),
      plainCall: () => echo.echo(TRIVIAL),
    };
    const modes = { backToBack: await interleavedRounds("blocks", systems), interleavedCalls: await interleavedRounds("calls", systems) };
    await local.close();
    await services.remove("python_executor");
    await services.remove("echo");
    const vsLocal = { backToBack: againstLocal(modes.backToBack), interleavedCalls: againstLocal(modes.interleavedCalls) };
    // The issue-4 figures below keep their meaning: each system on its own, calls back to back.
    const lat = modes.backToBack.figures;
    const sharedLat = lat.service;
    const sharedSession = lat.serviceSession;
    const localLat = lat.local;

    // Two baselines: the `python3` a user's PATH gives (what TorchRL's temporary mode runs, via
    // sys.executable), and the very binary the pool runs (a fair per-process start-up cost).
    const pathPython = (await promisify(execFile)("python3", ["-c", "import sys; print(sys.executable)"])).stdout.trim();
    const freshPathLat = await latency(40, () => promisify(execFile)(pathPython, ["-c", TRIVIAL]), 3);
    const freshLat = await latency(40, () => promisify(execFile)(python, ["-c", TRIVIAL]), 3);
    const temp = new PythonInterpreter({ services: null, persistent: false });
    const tempLat = await latency(20, () => temp.execute(TRIVIAL), 2);
    await temp.close();

    figures.latency = {
      code: TRIVIAL,
      python,
      rounds: ROUNDS,
      callsPerRound: CALLS_PER_ROUND,
      target: `service over NATS p50 <= ${SERVICE_VS_LOCAL_TARGET}x local persistent interpreter p50 (issue 15)`,
      targetMet: { backToBack: vsLocal.backToBack.targetMet, interleavedCalls: vsLocal.interleavedCalls.targetMet },
      serviceVsLocal: { backToBack: vsLocal.backToBack.serviceVsLocal, interleavedCalls: vsLocal.interleavedCalls.serviceVsLocal },
      backToBack: vsLocal.backToBack,
      interleavedCalls: vsLocal.interleavedCalls,
      // Back to back, as the issue-4 figures always were:
      sharedServiceNats: sharedLat,
      sharedServiceNatsWithSession: sharedSession,
      localPersistent: localLat,
      pathPython3: pathPython,
      freshPathPython3PerCall: freshPathLat,
      freshSameInterpreterPerCall: freshLat,
      sandboxedTemporaryPerCall: tempLat,
      speedupSharedVsFreshPathPython3: ratio(freshPathLat.p50Ms, sharedLat.p50Ms),
      speedupLocalVsFreshPathPython3: ratio(freshPathLat.p50Ms, localLat.p50Ms),
      speedupSharedVsFreshSameInterpreter: ratio(freshLat.p50Ms, sharedLat.p50Ms),
      speedupLocalVsFreshSameInterpreter: ratio(freshLat.p50Ms, localLat.p50Ms),
    };
    const verdict = (x: number) => `${x}x (target <= ${SERVICE_VS_LOCAL_TARGET}x: ${x <= SERVICE_VS_LOCAL_TARGET ? "met" : "NOT met"})`;
    const rows = (m: (typeof vsLocal)["backToBack"]): [string, string][] => [
      ["  shared service over NATS", `${m.service.p50Ms} ms (p99 ${m.service.p99Ms})`],
      ["    same, with a sessionId", `${m.serviceSession.p50Ms} ms (p99 ${m.serviceSession.p99Ms})`],
      ["  local persistent process", `${m.local.p50Ms} ms (p99 ${m.local.p99Ms})`],
      ["  plain actorbus call, same payload", `${m.plainCall.p50Ms} ms (p99 ${m.plainCall.p99Ms})`],
      ["  service / local", verdict(m.serviceVsLocal)],
      ["  service with sessionId / local", `${m.serviceWithSessionVsLocal}x`],
      ["  service - plain call - local", `${m.serviceOverPlainCallPlusLocalMs} ms`],
    ];
    printTable(`executor: latency of trivial code (p50, median of ${ROUNDS} interleaved rounds of ${CALLS_PER_ROUND} calls)`, [
      ["back to back (blocks of calls per system in turn)", ""],
      ...rows(vsLocal.backToBack),
      ["call by call (one call of each system in turn)", ""],
      ...rows(vsLocal.interleavedCalls),
      [`fresh python3 -c per call (PATH: ${pathPython})`, `${freshPathLat.p50Ms} ms`],
      [`fresh ${python} -c per call (the pool's binary)`, `${freshLat.p50Ms} ms`],
      ["sandboxed temporary process per call", `${tempLat.p50Ms} ms`],
      ["speedup shared vs fresh PATH python3", `${ratio(freshPathLat.p50Ms, sharedLat.p50Ms)}x (target >= 50x)`],
      ["speedup local vs fresh PATH python3", `${ratio(freshPathLat.p50Ms, localLat.p50Ms)}x (target >= 50x)`],
      ["speedup shared vs fresh same binary", `${ratio(freshLat.p50Ms, sharedLat.p50Ms)}x`],
      ["speedup local vs fresh same binary", `${ratio(freshLat.p50Ms, localLat.p50Ms)}x`],
    ]);

    // 2. 128 sessions on pools of 8 and 32 ---------------------------------------------------
    const throughput: Record<string, unknown> = {};
    for (const poolSize of [8, 32]) {
      const direct = new PythonExecutorService({ poolSize, maxPending: 4096 });
      await direct.ready();
      const d = await sessionsThroughput((code, sessionId) => direct.execute(code, { sessionId }));
      await direct.close();

      const name = `python_executor_${poolSize}`;
      await services.registerWithOptions(name, PythonExecutorService, { maxConcurrency: 1024, maxPending: 4096 }, { poolSize, maxPending: 4096 });
      const h = await services.get<PythonExecutorService>(name);
      await h.ready();
      const n = await sessionsThroughput((code, sessionId) => h.execute(code, { sessionId }));
      await services.remove(name);
      throughput[`pool${poolSize}`] = { direct: d, sharedServiceNats: n };
    }
    figures.sessions128 = { sessions: SESSIONS, callsPerSession: CALLS_PER_SESSION, code: "n += 1 (per-session state)", ...throughput };
    const t8 = throughput.pool8 as { direct: { executionsPerSec: number }; sharedServiceNats: { executionsPerSec: number } };
    const t32 = throughput.pool32 as typeof t8;
    printTable(`executor: ${SESSIONS} concurrent sessions, executions/s`, [
      ["pool of 8, direct", t8.direct.executionsPerSec],
      ["pool of 8, service over NATS", t8.sharedServiceNats.executionsPerSec],
      ["pool of 32, direct", t32.direct.executionsPerSec],
      ["pool of 32, service over NATS", t32.sharedServiceNats.executionsPerSec],
      ["pool 32 / pool 8 (service)", `${ratio(t32.sharedServiceNats.executionsPerSec, t8.sharedServiceNats.executionsPerSec)}x (2 cores: more interpreters cannot add CPU)`],
    ]);

    // 3. memory ------------------------------------------------------------------------------
    const pool = new PythonExecutorService({ poolSize: 32, maxPending: 4096 });
    await pool.ready();
    await Promise.all(Array.from({ length: SESSIONS }, (_, i) => pool.execute(`data = list(range(100))\nme = ${i}`, { sessionId: `env-${i}` })));
    const poolRss = pool.stats().interpreters.map((i) => i.rssBytes ?? 0);
    await pool.close();

    const perEnv = new PythonInterpreter({ services: null, persistent: true, maxProcesses: SESSIONS });
    const pids: number[] = [];
    for (let i = 0; i < SESSIONS; i += 16) {
      const batch = await Promise.all(
        Array.from({ length: 16 }, (_, k) => perEnv.execute(`import os\ndata = list(range(100))\nme = ${i + k}\nprint(os.getpid())`, { sessionId: `env-${i + k}` })),
      );
      pids.push(...batch.map((r) => Number(r.stdout)));
    }
    const perEnvRss = pids.map((p) => rssOf(p) ?? 0);
    await perEnv.close();

    const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
    const poolTotal = sum(poolRss);
    const perEnvTotal = sum(perEnvRss);
    figures.memory = {
      environments: SESSIONS,
      poolInterpreters: poolRss.length,
      poolTotalRssMiB: round(poolTotal / MIB, 1),
      onePerEnvInterpreters: perEnvRss.length,
      onePerEnvTotalRssMiB: round(perEnvTotal / MIB, 1),
      poolVsOnePerEnv: ratio(poolTotal, perEnvTotal),
      rssPerInterpreterMiB: round(poolTotal / poolRss.length / MIB, 2),
      rssPerInterpreterOnePerEnvMiB: round(perEnvTotal / perEnvRss.length / MIB, 2),
    };
    printTable(`executor: memory for ${SESSIONS} environments (RSS)`, [
      [`pool of ${poolRss.length} interpreters`, `${round(poolTotal / MIB, 1)} MiB`],
      [`one interpreter per environment (${perEnvRss.length})`, `${round(perEnvTotal / MIB, 1)} MiB`],
      ["pool / one per env", `${round((100 * poolTotal) / perEnvTotal, 1)}% (seed's table: 25%)`],
      ["RSS per interpreter", `${round(poolTotal / poolRss.length / MIB, 2)} MiB`],
    ]);
  } finally {
    await services.reset().catch(() => {});
    await services.close();
    await nats.stop();
  }
  return figures;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await benchExecutor(), null, 2));
}
