/**
 * An RL loop: a trainer pushes new weights to a replicated policy service (3 replicas) with
 * rolling updates, while two rollout workers (processes of their own) keep calling the policy
 * through the registry. Each worker asks for `minVersion` = the newest version it has used, so
 * its behaviour-policy versions never go back, even while replicas are on different versions.
 * No call fails and none reaches a replica mid-update.
 *
 *   npx tsx examples/rl/trainer-loop.ts        (uses NATS_URL, or starts a private nats-server)
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { ActorBusError, getServices, startNatsServer, withOptions, type NatsServerProcess } from "../../src/index.ts";
import { LinearPolicy, OBS_DIM, WEIGHTS } from "./policy.ts";

const namespace = process.env.ACTORBUS_EXAMPLE_NAMESPACE ?? "rl_example";
const VERSIONS = 5;

async function rollout(id: number): Promise<void> {
  const services = await getServices({ namespace, servers: process.env.NATS_URL });
  try {
    const policy = await services.get<LinearPolicy>("policy");
    const obs = Float32Array.from({ length: OBS_DIM }, (_, i) => (i + id) / OBS_DIM);
    let newest = 0;
    let steps = 0;
    let wentBack = 0;
    let halfUpdated = 0;
    const versions = new Set<number>();
    while (newest < VERSIONS) {
      // Never older weights than this worker already acted with: only replicas at `newest` or
      // above take the call; while none is, it waits (within its deadline).
      const step = await withOptions(policy, { minVersion: newest, timeoutMs: 10_000 }).act(obs);
      if (step.version < newest) wentBack++;
      if (step.halfUpdated) halfUpdated++;
      if (steps === 0) console.log(`[rollout ${id}] acting`);
      newest = Math.max(newest, step.version);
      versions.add(step.version);
      steps++;
    }
    console.log(`[rollout ${id}] ${steps} steps on versions ${[...versions].sort((a, b) => a - b).join(",")}: went back ${wentBack} times, ${halfUpdated} half-updated`);
  } finally {
    await services.close();
  }
}

async function trainer(): Promise<void> {
  let server: NatsServerProcess | undefined;
  const url = process.env.NATS_URL ?? (server = await startNatsServer()).url;
  const policy = await LinearPolicy.options({ numReplicas: 3, maxConcurrency: 4, meshName: "policy", namespace, servers: url }).asService();
  try {
    const self = fileURLToPath(import.meta.url);
    const acting: Promise<void>[] = [];
    const workers = [1, 2].map((id) => {
      const child = spawn(process.execPath, ["--import", "tsx", self, "--rollout", String(id)], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, NATS_URL: url } });
      const lines = createInterface({ input: child.stdout! });
      acting.push(
        new Promise((resolve) =>
          lines.on("line", (line) => {
            console.log(line);
            if (line.endsWith("acting")) resolve();
          }),
        ),
      );
      return new Promise<void>((resolve, reject) => {
        child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`rollout worker ${id} exited with ${code}`))));
      });
    });
    await Promise.race([Promise.all(acting), Promise.all(workers)]); // both workers are acting
    const served = () => policy.status().replicas.reduce((n, r) => n + r.calls, 0);

    const weights = new Float32Array(WEIGHTS);
    for (let v = 1; v <= VERSIONS; v++) {
      for (let i = 0; i < weights.length; i++) weights[i]! += 0.01 * Math.sin(i + v); // "a gradient step"
      const before = served();
      const t0 = performance.now();
      // Each replica in turn: out of routing, weights in, version bumped, back in routing.
      const done = await withOptions(policy.loadWeights.rolling, { timeoutMs: 30_000 })(weights, v);
      const ms = Math.round(performance.now() - t0);
      console.log(`[trainer] v${v} rolled to ${done.length} replicas in ${ms} ms while ${served() - before} rollout steps were served; versions now ${policy.status().replicas.map((r) => r.version).join(",")}`);
      await new Promise((r) => setTimeout(r, 100)); // rollouts on v for a while: the next batch of experience
    }
    await Promise.all(workers);
    const failed = policy.status().replicas.reduce((n, r) => n + r.errors, 0);
    console.log(`[trainer] done: ${VERSIONS} versions rolled, ${failed} failed calls`);
  } finally {
    await policy.shutdown();
    await server?.stop();
  }
}

try {
  if (process.argv[2] === "--rollout") await rollout(Number(process.argv[3]));
  else await trainer();
} catch (err) {
  console.error(err instanceof ActorBusError ? `actorbus example: ${err.message}` : err);
  process.exitCode = 1;
}
