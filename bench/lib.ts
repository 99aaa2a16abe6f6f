import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

/** Latency samples in ms → summary figures. */
export function summarize(samplesMs: number[]): { p50Ms: number; p99Ms: number; meanMs: number } {
  const s = [...samplesMs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0;
  return { p50Ms: round(q(0.5), 4), p99Ms: round(q(0.99), 4), meanMs: round(s.reduce((a, b) => a + b, 0) / Math.max(1, s.length), 4) };
}

export const round = (x: number, digits = 2) => Number(x.toFixed(digits));
export const ratio = (a: number, b: number) => round(a / b, 3);

/** Runs `n` calls one after another; calls/s and latency. */
export async function sequential(n: number, call: () => Promise<unknown>) {
  for (let i = 0; i < Math.min(200, n); i++) await call(); // warm-up: JIT and connection
  const lat: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await call();
    lat.push(performance.now() - s);
  }
  const secs = (performance.now() - t0) / 1000;
  return { callsPerSec: Math.round(n / secs), ...summarize(lat) };
}

/** Keeps `inFlight` calls outstanding until `total` complete; calls/s. */
export async function pipelined(total: number, inFlight: number, call: () => Promise<unknown>) {
  await Promise.all(Array.from({ length: inFlight }, () => call())); // warm-up
  let started = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (started < total) {
      started++;
      await call();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return { callsPerSec: Math.round(total / ((performance.now() - t0) / 1000)), inFlight };
}

/** A child process running a bench helper script; resolves once it prints "ready". */
export async function startChild(script: string, args: string[], env?: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; lines: AsyncIterator<string>; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ["--import", "tsx", script, ...args], { stdio: ["pipe", "pipe", "inherit"], ...(env ? { env } : {}) });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.value !== "ready") throw new Error(`${script} did not start: ${first.value}`);
  return {
    child,
    lines,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.stdin!.end();
      const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}

export function printTable(title: string, rows: [string, string | number][]): void {
  console.log(`\n${title}`);
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`);
}

/** Warm-up of the sequential comparisons: host processes started moments ago are still compiling. */
const SEQUENTIAL_WARMUP_MS = 3_000;

/**
 * One call of each system in turn: all see the same machine. Load from other processes on 2
 * cores moves round-by-round figures by tens of percent; interleaving cancels it. The order
 * rotates every round: a call's place in it moves its latency by up to 5% (one measured right
 * after another system's reply shares the cores with that host's and server's tail work), so
 * each system takes each place equally often. The warm-up lasts SEQUENTIAL_WARMUP_MS: in the
 * first seconds after their start, hosts' calls took 2-3x their later latency (JIT and module
 * compilation on the same 2 cores), which measures start-up, not calls.
 */
export async function interleavedSequential<K extends string>(n: number, systems: Record<K, () => Promise<unknown>>) {
  const entries = Object.entries(systems) as [K, () => Promise<unknown>][];
  const warmUntil = performance.now() + SEQUENTIAL_WARMUP_MS;
  for (let i = 0; i < 500 || performance.now() < warmUntil; i++) for (const [, call] of entries) await call();
  const lat = entries.map(() => [] as number[]);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < entries.length; j++) {
      const k = (i + j) % entries.length;
      const t = performance.now();
      await entries[k]![1]();
      lat[k]!.push(performance.now() - t);
    }
  }
  const out = {} as Record<K, { callsPerSec: number; p50Ms: number; p99Ms: number; meanMs: number }>;
  entries.forEach(([name], k) => {
    const s = summarize(lat[k]!);
    out[name] = { callsPerSec: Math.round(1000 / s.meanMs), ...s };
  });
  return out;
}

export async function alternatingSequential(n: number, a: () => Promise<unknown>, b: () => Promise<unknown>) {
  return interleavedSequential(n, { a, b });
}

/** Rounds of `perRound` calls with `inFlight` outstanding, each system in turn; calls/s over all rounds. */
export async function interleavedPipelined<K extends string>(rounds: number, perRound: number, inFlight: number, systems: Record<K, () => Promise<unknown>>) {
  const run = async (call: () => Promise<unknown>) => {
    let started = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (started < perRound) {
          started++;
          await call();
        }
      }),
    );
    return performance.now() - t0;
  };
  const entries = Object.entries(systems) as [K, () => Promise<unknown>][];
  for (const [, call] of entries) await run(call); // warm-up
  const ms = entries.map(() => 0);
  for (let r = 0; r < rounds; r++) for (let k = 0; k < entries.length; k++) ms[k]! += await run(entries[k]![1]);
  const out = {} as Record<K, { callsPerSec: number; inFlight: number }>;
  entries.forEach(([name], k) => (out[name] = { callsPerSec: Math.round((rounds * perRound) / (ms[k]! / 1000)), inFlight }));
  return out;
}

export async function alternatingPipelined(rounds: number, perRound: number, inFlight: number, a: () => Promise<unknown>, b: () => Promise<unknown>) {
  return interleavedPipelined(rounds, perRound, inFlight, { a, b });
}
