/**
 * A batched policy server and actors in other processes.
 *
 *   npx tsx examples/inference/batched-policy.ts          (NATS_URL, else localhost or a private nats-server)
 *
 * The main process hosts one InferenceServer for a small MLP policy and registers it as
 * "policy". It then starts three actor processes; each steps eight toy environments at once and
 * asks the policy for every action. The server turns the actors' concurrent requests into a few
 * large model calls: watch the mean batch size in the summary.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { connectBus, getServices, inferenceClient, InferenceServer, NatsTransport, registerInference, type TensorBatch, type TensorRecord } from "../../src/index.ts";

const OBS = 4;
const HIDDEN = 32;
const ACTIONS = 2;
const ACTORS = 3;
const ENVS_PER_ACTOR = 8;
const STEPS = 40;

/** A 4 -> 32 -> 2 MLP with fixed pseudo-random weights, run on the whole batch at once. */
function makePolicy() {
  let seed = 42;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const w1 = Float32Array.from({ length: OBS * HIDDEN }, rand);
  const w2 = Float32Array.from({ length: HIDDEN * ACTIONS }, rand);
  return (batch: TensorBatch) => {
    const n = batch.batchSize;
    const x = batch.data.observation as Float32Array; // n * OBS, one row per actor request
    const logits = new Float32Array(n * ACTIONS);
    const h = new Float32Array(HIDDEN);
    for (let b = 0; b < n; b++) {
      for (let j = 0; j < HIDDEN; j++) {
        let s = 0;
        for (let i = 0; i < OBS; i++) s += x[b * OBS + i]! * w1[i * HIDDEN + j]!;
        h[j] = s > 0 ? s : 0;
      }
      for (let k = 0; k < ACTIONS; k++) {
        let s = 0;
        for (let j = 0; j < HIDDEN; j++) s += h[j]! * w2[j * ACTIONS + k]!;
        logits[b * ACTIONS + k] = s;
      }
    }
    return { batchSize: n, data: { logits }, shapes: { logits: [n, ACTIONS] } };
  };
}

async function main(): Promise<void> {
  const connection = await connectBus();
  const url = connection.devServerUrl ?? `nats://${connection.nc!.getServer()}`;
  const namespace = `example_${randomBytes(3).toString("hex")}`;
  const services = await getServices({ connection, namespace });

  const transport = new NatsTransport({ connection, namespace, name: "policy" });
  const server = new InferenceServer(makePolicy(), transport, { maxBatchSize: 64, timeoutMs: 5 }).start();
  await server.ready();
  await registerInference(services, "policy", server);
  console.log(`policy server up on ${transport.subject}; starting ${ACTORS} actor processes`);

  const self = fileURLToPath(import.meta.url);
  const reports = await Promise.all(
    Array.from({ length: ACTORS }, (_, id) => {
      const child = spawn(process.execPath, ["--import", "tsx", self, "actor", url, namespace, String(id)], { stdio: ["ignore", "pipe", "inherit"] });
      return new Promise<{ id: number; steps: number; meanReward: number }>((resolve, reject) => {
        createInterface({ input: child.stdout! }).once("line", (l) => resolve(JSON.parse(l)));
        child.once("exit", (code) => code !== 0 && reject(new Error(`actor ${id} exited with ${code}`)));
      });
    }),
  );
  for (const r of reports) console.log(`actor ${r.id}: ${r.steps} steps, mean reward ${r.meanReward.toFixed(3)}`);

  const s = server.stats();
  console.log(
    `served ${s.requests} requests in ${s.batches} model calls: mean batch size ${s.meanBatchSize.toFixed(1)}, ` +
      `queue wait p50 ${s.p50QueueWaitMs.toFixed(2)} ms, model p50 ${s.p50ModelMs.toFixed(3)} ms`,
  );
  await services.close(); // stops the registered endpoint, which shuts the server down
  await connection.close();
}

/** One actor process: steps ENVS_PER_ACTOR toy environments concurrently, one policy call per step. */
async function actor(url: string, namespace: string, id: number): Promise<void> {
  const services = await getServices({ servers: url, namespace });
  const policy = await inferenceClient<TensorRecord, TensorRecord>(services, "policy");
  let steps = 0;
  let reward = 0;
  await Promise.all(
    Array.from({ length: ENVS_PER_ACTOR }, async (_, env) => {
      const state = Float32Array.from({ length: OBS }, (_, i) => Math.sin(id * 7 + env * 3 + i));
      for (let t = 0; t < STEPS; t++) {
        const { logits } = (await policy.call({ observation: state })) as { logits: Float32Array };
        const action = logits[0]! >= logits[1]! ? 0 : 1;
        // Toy dynamics: the chosen action pushes the state; reward for staying near zero.
        for (let i = 0; i < OBS; i++) state[i] = 0.9 * state[i]! + (action === 0 ? -0.05 : 0.05);
        reward += 1 - Math.min(1, Math.abs(state[0]!));
        steps++;
      }
    }),
  );
  process.stdout.write(JSON.stringify({ id, steps, meanReward: reward / steps }) + "\n");
  await policy.close();
  await services.close();
}

if (process.argv[2] === "actor") await actor(process.argv[3]!, process.argv[4]!, Number(process.argv[5]));
else await main();
