/**
 * Cost of OpenTelemetry tracing on pipelined calls (part of the core section). A client and a
 * host process, each holding both arms of a comparison (see tracing-peer.ts), run short rounds
 * through one arm then the other, so that load from elsewhere on the machine hits both alike:
 *   off vs api  instrumentation disabled (ACTORBUS_TRACING=off) vs the API with no SDK
 *   off vs sdk  the same, in processes with an SDK sampling every call (spans batched to an
 *               exporter that discards them)
 */
import { fileURLToPath } from "node:url";
import { tracerSource } from "../src/tracing/index.ts";
import { printTable, round, startChild } from "./lib.ts";

const PEER = fileURLToPath(new URL("./tracing-peer.ts", import.meta.url));
const IN_FLIGHT = 256;
const NO_SDK = { rounds: 64, calls: 5_000 };
const WITH_SDK = { rounds: 16, calls: 5_000 }; // rounds: whole cycles of 4
// Rounds run and dropped first: the processes' JIT and the server's buffers settle.
const WARM_UP = 8;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Round times (ms) of the two arms, after WARM_UP rounds. Rounds come in cycles of four, each
 * arm through its first service then its second, going first then second: what order does
 * cancels within a cycle.
 */
async function compare(url: string, sdk: boolean, rounds: number, calls: number): Promise<[number[], number[]]> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.ACTORBUS_TRACING;
  if (sdk) env.BENCH_OTEL_SDK = "1";
  else delete env.BENCH_OTEL_SDK;
  const ns = sdk ? "bench_tracing_sdk" : "bench_tracing";
  const host = await startChild(PEER, ["host", url, ns], env);
  const client = await startChild(PEER, ["client", url, ns], env);
  const arms = ["off", sdk ? "sdk" : "api"];
  const run = async (key: string) => {
    client.child.stdin!.write(`${key} ${calls} ${IN_FLIGHT}\n`);
    return Number((await client.lines.next()).value);
  };
  try {
    const took: [number[], number[]] = [[], []];
    for (let r = -WARM_UP; r < rounds; r++) {
      const variant = Math.floor(r / 2) & 1;
      const first = r & 1;
      for (const k of [first, 1 - first]) {
        const ms = await run(`${arms[k]}${variant}`);
        if (r >= 0) took[k]!.push(ms);
      }
    }
    return took;
  } finally {
    await Promise.all([client.stop(), host.stop()]);
  }
}

/**
 * What the API-without-SDK arm adds to a call, timed alone: the check each end makes (no SDK is
 * registered in this process). Precise where the call-level ratio is within the machine's noise.
 */
function checkNs(): number {
  const check = tracerSource();
  const n = 2_000_000;
  let on = 0;
  for (let i = 0; i < 100_000; i++) if (check()) on++;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) if (check()) on++;
  const ns = ((performance.now() - t0) * 1e6) / n;
  if (on > 0) throw new Error("an SDK is registered in the benchmark's own process");
  return round(ns, 1);
}

export async function benchTracing(url: string): Promise<Record<string, unknown>> {
  const check = checkNs();
  const [off1, api] = await compare(url, false, NO_SDK.rounds, NO_SDK.calls);
  const [off2, sdk] = await compare(url, true, WITH_SDK.rounds, WITH_SDK.calls);
  // The rounds of one cycle saw about the same machine: the ratio within each cycle, then
  // their median.
  const paired = (base: number[], arm: number[]) => {
    const cycles: number[] = [];
    const sum = (xs: number[], i: number) => xs[i]! + xs[i + 1]! + xs[i + 2]! + xs[i + 3]!;
    for (let i = 0; i + 3 < base.length; i += 4) cycles.push(sum(base, i) / sum(arm, i));
    return round(median(cycles), 3);
  };
  const rate = (ms: number[], calls: number) => Math.round(calls / (median(ms) / 1000));
  const figures = {
    inFlight: IN_FLIGHT,
    apiNoSdk: {
      rounds: NO_SDK.rounds,
      callsPerRound: NO_SDK.calls,
      callsPerSec: { disabled: rate(off1, NO_SDK.calls), apiNoSdk: rate(api, NO_SDK.calls) },
      ratioVsDisabled: paired(off1, api),
      ratioOfMedians: round(median(off1) / median(api), 3),
      // One check on each end of a call, against the time a call takes in the disabled arm.
      checkNsPerCallEnd: check,
      ratioFromCheck: round(1 - (2 * check) / (1e9 / rate(off1, NO_SDK.calls)), 4),
      targetAtLeast: 0.97,
    },
    sdkAlwaysOn: {
      rounds: WITH_SDK.rounds,
      callsPerRound: WITH_SDK.calls,
      callsPerSec: { disabled: rate(off2, WITH_SDK.calls), sdkAlwaysOn: rate(sdk, WITH_SDK.calls) },
      ratioVsDisabled: paired(off2, sdk),
      costUsPerCall: round(((median(sdk) - median(off2)) * 1000) / WITH_SDK.calls, 1),
    },
  };
  printTable(`tracing: pipelined calls (${IN_FLIGHT} in flight), two arms in alternating rounds, medians`, [
    ["instrumentation disabled calls/s", figures.apiNoSdk.callsPerSec.disabled],
    ["API, no SDK calls/s", figures.apiNoSdk.callsPerSec.apiNoSdk],
    [`ratio API no SDK / disabled, ${NO_SDK.rounds} rounds (>= 0.97)`, `${figures.apiNoSdk.ratioVsDisabled} (of the medians: ${figures.apiNoSdk.ratioOfMedians})`],
    [`SDK always-on calls/s (disabled, same processes: ${figures.sdkAlwaysOn.callsPerSec.disabled})`, figures.sdkAlwaysOn.callsPerSec.sdkAlwaysOn],
    [`ratio SDK always-on / disabled, ${WITH_SDK.rounds} rounds`, figures.sdkAlwaysOn.ratioVsDisabled],
    ["SDK cost per call, both ends (us)", figures.sdkAlwaysOn.costUsPerCall],
    ["no-SDK check per call end (ns), ratio it bounds", `${check}, ${figures.apiNoSdk.ratioFromCheck}`],
  ]);
  return figures;
}
