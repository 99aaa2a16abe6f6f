/**
 * Fault report: each scenario under steady load from client processes, with counts of calls
 * attempted / succeeded / failed with a typed error / hung (must be 0), registry entries before
 * and after, and recovery time. Scenarios are shared with test/cluster and test/reliability.
 *
 * Options (after `npm run bench:faults --`):
 *   --drills=a,b   run only these: node-kill, server-restart, hostile, quorum, partition,
 *                  freeze, lame-duck, agent, soak (default: all); figures of the others are kept
 *   --soak-ms=N    how long the soak runs (default 300000: 5 minutes); also BENCH_SOAK_MS
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { netnsUnavailable } from "../test/helpers/netns.ts";
import { agentReturn, lameDuckMove, replicaFreeze, soak, type SoakReport } from "../test/helpers/drills.ts";
import { clusterNodeKill, hostileFlood, networkPartition, registryQuorumLoss, singleServerRestart, type ScenarioReport } from "../test/helpers/scenarios.ts";
import { printTable } from "./lib.ts";

const DRILLS = ["node-kill", "server-restart", "hostile", "quorum", "partition", "freeze", "lame-duck", "agent", "soak"] as const;
type Drill = (typeof DRILLS)[number];

function flag(name: string): string | undefined {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg?.slice(name.length + 3);
}

function selected(): Set<Drill> {
  const given = flag("drills");
  if (!given) return new Set(DRILLS);
  const names = given.split(",").map((s) => s.trim()).filter(Boolean);
  const unknown = names.filter((n) => !(DRILLS as readonly string[]).includes(n));
  if (unknown.length) throw new Error(`unknown drill(s) ${unknown.join(", ")}; choose from ${DRILLS.join(", ")}`);
  return new Set(names as Drill[]);
}

/** The figures of the last run, so that running some drills keeps the others'. */
function previous(): { drills: Record<string, unknown>; scenarios: ScenarioReport[] } {
  const out = fileURLToPath(new URL("./results.json", import.meta.url));
  if (!existsSync(out)) return { drills: {}, scenarios: [] };
  const faults = (JSON.parse(readFileSync(out, "utf8")) as { faults?: { drills?: Record<string, unknown>; scenarios?: ScenarioReport[] } }).faults;
  return { drills: faults?.drills ?? {}, scenarios: faults?.scenarios ?? [] };
}

function printScenario(r: ScenarioReport): void {
  printTable(`faults: ${r.scenario}`, [
    ["calls attempted", r.attempted],
    ["succeeded", `${r.succeeded} (${(r.successRate * 100).toFixed(3)}%)`],
    ["failed with a typed error", r.failedTyped],
    ["failed untyped", r.failedUntyped],
    ["hung (must be 0)", r.hung],
    ["wrong answers: non-retryable errors of a registered service (must be 0)", r.wrongAnswers],
    ["retries of retryable errors", `${r.retries} ${JSON.stringify(r.errors)}`],
    ["client reconnects", r.reconnects],
    ["registry entries before / after", `${r.registryBefore.length} / ${r.registryAfter.length}`],
    ["recovery: fault over -> first call ok (ms)", r.recoveryMs],
    ...Object.entries(r.extra ?? {}).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)] as [string, string]),
    ...(r.hostile
      ? ([
          ["hostile payloads sent (seed)", `${r.hostile.sent} (${r.hostile.seed})`],
          ["hostile requests / replies", `${r.hostile.withReply} / ${r.hostile.replies}`],
          ["replies: typed errors / normal results / untyped (must be 0)", `${r.hostile.typedErrors} / ${r.hostile.results} / ${r.hostile.untypedReplies}`],
        ] as [string, string | number][])
      : []),
  ]);
}

function printSoak(r: SoakReport): void {
  printTable(`faults: ${r.scenario}`, [
    ["calls attempted", r.attempted],
    ["succeeded", `${r.succeeded} (${((r.succeeded / Math.max(1, r.attempted)) * 100).toFixed(3)}%)`],
    ["failed with a typed error", `${r.failedTyped} ${JSON.stringify(r.errors)}`],
    ["failed untyped", r.failedUntyped],
    ["hung (must be 0)", r.hung],
    ["wrong answers (must be 0)", r.wrongAnswers],
    ["registry cycles (register, list, remove)", r.registryCycles],
    ["heap MB: first / last / slope per min", `${r.first.heapMB} / ${r.last.heapMB} / ${r.slopes.heapMBPerMin}`],
    ["RSS MB: first / last / slope per min", `${r.first.rssMB} / ${r.last.rssMB} / ${r.slopes.rssMBPerMin}`],
    ["open fds: first / last / slope per min", `${r.first.fds} / ${r.last.fds} / ${r.slopes.fdsPerMin}`],
    ["server consumers: first / last / slope per min", `${r.first.serverConsumers} / ${r.last.serverConsumers} / ${r.slopes.serverConsumersPerMin}`],
  ]);
}

/** What results.json keeps of a scenario: not the per-failure times. */
const kept = (r: ScenarioReport): ScenarioReport => {
  const { errorTimes: _, ...rest } = r;
  return rest;
};

export async function benchFaults(): Promise<Record<string, unknown>> {
  const want = selected();
  const load = { clients: 3, lanes: 4, loadMs: 3_000 };
  const before = previous();
  const drills: Record<string, unknown> = before.drills;
  const scenarios: ScenarioReport[] = [];
  const runScenario = async (name: Drill, f: () => Promise<ScenarioReport | ScenarioReport[]>) => {
    if (!want.has(name)) return;
    const got = [await f()].flat().map(kept);
    for (const r of got) printScenario(r);
    scenarios.push(...got);
    drills[name] = got.length === 1 ? got[0] : got;
  };

  await runScenario("node-kill", () => clusterNodeKill({ ...load, outageMs: 3_000 }));
  await runScenario("server-restart", () => singleServerRestart({ ...load, outageMs: 1_000 }));
  await runScenario("hostile", () => hostileFlood({ ...load, outageMs: 3_000 }));
  await runScenario("quorum", async () => [
    await registryQuorumLoss({ ...load, outageMs: 2_000, bucketReplicas: 3 }),
    await registryQuorumLoss({ ...load, outageMs: 2_000, bucketReplicas: 1 }),
  ]);
  const noNetns = netnsUnavailable();
  if (want.has("partition") && noNetns) console.log(`\nfaults: network partition skipped: ${noNetns}`);
  else await runScenario("partition", () => networkPartition({ ...load, outageMs: 4_000 }));
  // Issue 16's drills.
  await runScenario("freeze", () => replicaFreeze({ ...load, outageMs: 10_000, callTimeoutMs: 2_000 }));
  await runScenario("lame-duck", () => lameDuckMove({ ...load, outageMs: 0, callTimeoutMs: 2_000 }));
  await runScenario("agent", () => agentReturn({ ...load, outageMs: 3_000 }));
  if (want.has("soak")) {
    const durationMs = Number(flag("soak-ms") ?? process.env.BENCH_SOAK_MS ?? 300_000);
    if (!(durationMs >= 10_000)) throw new Error(`--soak-ms must be at least 10000 (got ${flag("soak-ms") ?? process.env.BENCH_SOAK_MS})`);
    const r = await soak({ durationMs, lanes: 64 });
    printSoak(r);
    drills.soak = r;
  }
  // Scenarios not run this time keep their last figures.
  const ran = new Set(scenarios.map((r) => r.scenario));
  const all = [...before.scenarios.filter((r) => !ran.has(r.scenario)), ...scenarios];
  return { scenarios: all, drills, ...(noNetns ? { partitionSkipped: noNetns } : {}) };
}
