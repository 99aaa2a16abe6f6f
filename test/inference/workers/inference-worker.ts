/**
 * A worker process for the inference tests: `node --import tsx inference-worker.ts <mode> <json>`.
 * Prints one JSON line per event on stdout. A server stays up until its stdin closes, so a test
 * that dies takes its workers with it.
 */
import { fileURLToPath } from "node:url";
import { connectBus } from "../../../src/connection/index.ts";
import { InferenceServer, NatsTransport, type TensorBatch, type TensorRecord } from "../../../src/inference/index.ts";
import { doubling } from "../helpers.ts";

interface WorkerArgs {
  url: string;
  namespace: string;
  name?: string;
  /** server: awaited per batch before answering. */
  delayMs?: number;
  /** server: print {batch: size} when a model call starts. */
  announce?: boolean;
  /** server: model calls never return (to be killed mid-batch). */
  hang?: boolean;
  maxBatchSize?: number;
  /** clients: concurrent loops in this process, and sequential calls per loop. */
  concurrency?: number;
  calls?: number;
  worker?: number;
}

const out = (v: unknown) => process.stdout.write(JSON.stringify(v) + "\n");

async function server(args: WorkerArgs): Promise<void> {
  const connection = await connectBus({ servers: args.url });
  const transport = new NatsTransport({ connection, namespace: args.namespace, name: args.name ?? "policy" });
  const model = async (batch: TensorBatch) => {
    if (args.announce) out({ batch: batch.batchSize });
    if (args.hang) await new Promise(() => {});
    if (args.delayMs) await new Promise((r) => setTimeout(r, args.delayMs));
    return doubling(batch);
  };
  const s = new InferenceServer(model, transport, { maxBatchSize: args.maxBatchSize ?? 64 }).start();
  await s.ready();
  out({ ready: true, pid: process.pid });
  process.stdin.resume();
  await new Promise((r) => process.stdin.once("close", r).once("end", r));
  await s.shutdown();
  await connection.close();
}

async function clients(args: WorkerArgs): Promise<void> {
  const connection = await connectBus({ servers: args.url });
  const client = new NatsTransport<TensorRecord, TensorRecord>({ connection, namespace: args.namespace, name: args.name ?? "policy" }).client();
  let ok = 0;
  let wrong = 0;
  const errors: string[] = [];
  const w = args.worker ?? 0;
  await Promise.all(
    Array.from({ length: args.concurrency ?? 1 }, async (_, loop) => {
      for (let k = 0; k < (args.calls ?? 1); k++) {
        // A value unique to this caller: a result routed to anyone else shows up as wrong.
        const v = w * 1_000_000 + loop * 1_000 + k;
        try {
          const r = await client.call({ observation: new Float32Array([v, -v]) });
          const a = r.action as Float32Array;
          if (a instanceof Float32Array && a[0] === 2 * v && a[1] === -2 * v) ok++;
          else wrong++;
        } catch (e) {
          errors.push((e as Error).name);
        }
      }
    }),
  );
  out({ ok, wrong, errors });
  await connection.close();
}

// `npx mocha test/inference` loads every file under the folder: act only as a process entry.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [mode, json] = process.argv.slice(2);
  const args = JSON.parse(json ?? "{}") as WorkerArgs;
  if (mode === "server") await server(args);
  else if (mode === "clients") await clients(args);
  else throw new Error(`unknown mode ${mode}`);
}
