/**
 * The seed's distributed_services example, on NATS: one process registers services, three
 * worker processes find and use them by name, then the first resets the namespace.
 *
 *   npm start                   # uses NATS_URL, else 127.0.0.1:4222, else starts a private nats-server
 *   NATS_URL=nats://host:4222 npm start
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ActorBusError, getServices, ServiceExistsError } from "../../src/index.ts";

export class TokenizerService {
  constructor(private readonly opts: { vocabSize: number }) {}
  encode(text: string): number[] {
    return [...text].map((c) => c.charCodeAt(0) % this.opts.vocabSize);
  }
  decode(ids: number[]): string {
    return String.fromCharCode(...ids);
  }
}

/** Stands in for a model server: Ray-style actor options go in registerWithOptions. */
export class EmbeddingService {
  private calls = 0;
  constructor(private readonly opts: { modelName: string; dim: number }) {}
  async embed(ids: number[]): Promise<Float32Array> {
    this.calls++;
    const v = new Float32Array(this.opts.dim);
    ids.forEach((id, i) => (v[i % this.opts.dim]! += id / 1000));
    return v;
  }
  info() {
    return { model: this.opts.modelName, calls: this.calls };
  }
}

const namespace = process.env.ACTORBUS_EXAMPLE_NAMESPACE ?? "distributed_example";

async function worker(id: number) {
  // Any process: same backend + namespace, services found by name.
  const services = await getServices({ backend: "nats", namespace });
  const tokenizer = await services.get<TokenizerService>("tokenizer");
  const embedder = await services.get<EmbeddingService>("embedder");
  const ids = await tokenizer.encode(`hello from worker ${id}`);
  const vec = await embedder.embed(ids);
  console.log(`[worker ${id}] pid ${process.pid}: ${ids.length} tokens -> embedding[${vec.length}] via ${(await embedder.info()).model}`);
  await services.close();
}

async function main() {
  const services = await getServices({ backend: "nats", namespace });
  const url = services.connection.devServerUrl ?? process.env.NATS_URL ?? "nats://127.0.0.1:4222";
  if (services.connection.devServerUrl) console.log(`[main] no NATS server on 127.0.0.1:4222: started a private one at ${url}`);
  try {
    await services.reset(); // a clean namespace, even after an interrupted earlier run

    await services.register("tokenizer", TokenizerService, { vocabSize: 50_000 });
    console.log("[main] registered tokenizer");
    try {
      await services.register("tokenizer", TokenizerService, { vocabSize: 1 });
    } catch (err) {
      if (!(err instanceof ServiceExistsError)) throw err;
      console.log(`[main] duplicate rejected: ${err.message}`);
    }
    await services.registerWithOptions("embedder", EmbeddingService, { maxConcurrency: 4, numGpus: 0 }, { modelName: "tiny-embed", dim: 8 });
    console.log(`[main] services: ${(await services.list()).join(", ")}`);

    // Three worker processes share the services registered above.
    const self = fileURLToPath(import.meta.url);
    await Promise.all(
      [1, 2, 3].map(
        (id) =>
          new Promise<void>((resolve, reject) => {
            const child = spawn(process.execPath, ["--import", "tsx", self, "worker", String(id)], {
              stdio: ["ignore", "inherit", "inherit"],
              env: { ...process.env, NATS_URL: url },
            });
            child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`worker ${id} exited with ${code}`))));
          }),
      ),
    );
    const embedder = await services.get<EmbeddingService>("embedder");
    console.log(`[main] embedder served ${(await embedder.info()).calls} calls from 3 workers`);

    await services.reset();
    console.log(`[main] after reset: [${(await services.list()).join(", ")}]`);
  } finally {
    await services.close();
  }
}

try {
  if (process.argv[2] === "worker") await worker(Number(process.argv[3]));
  else await main();
} catch (err) {
  // Our errors say what went wrong and what to do (no NATS server, for one): a stack would bury
  // that line. Anything else is a bug, and its stack is what helps.
  console.error(err instanceof ActorBusError ? `actorbus example: ${err.message}` : err);
  process.exitCode = 1;
}
