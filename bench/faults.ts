/**
 * Fault report: each scenario under steady load from client processes, with counts of calls
 * attempted / succeeded / failed with a typed error / hung (must be 0), registry entries before
 * and after, and recovery time. Scenarios are shared with test/cluster.
 */
import { netnsUnavailable } from "../test/helpers/netns.ts";
import { clusterNodeKill, hostileFlood, networkPartition, registryQuorumLoss, singleServerRestart, type ScenarioReport } from "../test/helpers/scenarios.ts";
import { printTable } from "./lib.ts";

export async function benchFaults(): Promise<Record<string, unknown>> {
  const reports: ScenarioReport[] = [
    await clusterNodeKill({ clients: 3, lanes: 4, loadMs: 3_000, outageMs: 3_000 }),
    await singleServerRestart({ clients: 3, lanes: 4, loadMs: 3_000, outageMs: 1_000 }),
    await hostileFlood({ clients: 3, lanes: 4, loadMs: 3_000, outageMs: 3_000 }),
    await registryQuorumLoss({ clients: 3, lanes: 4, loadMs: 3_000, outageMs: 2_000, bucketReplicas: 3 }),
    await registryQuorumLoss({ clients: 3, lanes: 4, loadMs: 3_000, outageMs: 2_000, bucketReplicas: 1 }),
  ];
  const noNetns = netnsUnavailable();
  if (noNetns) console.log(`\nfaults: network partition skipped: ${noNetns}`);
  else reports.push(await networkPartition({ clients: 3, lanes: 4, loadMs: 3_000, outageMs: 4_000 }));
  for (const r of reports) {
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
      ...(r.hostile
        ? ([
            ["hostile payloads sent (seed)", `${r.hostile.sent} (${r.hostile.seed})`],
            ["hostile requests / replies", `${r.hostile.withReply} / ${r.hostile.replies}`],
            ["replies: typed errors / normal results / untyped (must be 0)", `${r.hostile.typedErrors} / ${r.hostile.results} / ${r.hostile.untypedReplies}`],
          ] as [string, string | number][])
        : []),
    ]);
  }
  return { scenarios: reports, ...(noNetns ? { partitionSkipped: noNetns } : {}) };
}
