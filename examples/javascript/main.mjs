// actorbus from plain JavaScript: a service registered by another process, an Actor with two
// replica processes, a Python executor and a batched inference server over NATS.
//   NATS_URL=nats://127.0.0.1:4222 node serve.mjs &   then   node main.mjs
import { getServices, InferenceServer, NatsTransport, inferenceClient, registerInference, PythonExecutorService } from "actorbus";
import { Counter } from "./tokenizer.mjs";

const namespace = process.env.ACTORBUS_NAMESPACE ?? "js_example";
const services = await getServices({ namespace });
try {
  // 1. A service another process registered, found by name.
  const tokenizer = await services.get("tokenizer");
  console.log(`tokens: ${JSON.stringify(await tokenizer.tokenize("hello from plain node"))}`);
  console.log(`bytes: ${JSON.stringify(await tokenizer.bytes(new Uint8Array([1, 2, 3])))}`);

  // 2. Replicas: two processes, each with its own count.
  const Configured = Counter.options({ numReplicas: 2, namespace });
  console.log(`numReplicas: ${Configured.numReplicas}`);
  const counter = await Configured.asService(10);
  try {
    await counter.incr(1);
    const who = await counter.whoami.fanout();
    console.log(`replicas: ${new Set(who.map((w) => w.pid)).size}, counts: ${JSON.stringify((await counter.incr.fanout(0)).sort())}`);
    // On this machine, or on the hosts of `actorbus agent`s running in the namespace.
    console.log(`hosts: ${[...new Set(who.map((w) => w.host))].join(", ")}`);
  } finally {
    await counter.shutdown();
  }

  // 3. Python, in a sandboxed interpreter pool registered as a service.
  await services.registerWithOptions("python", PythonExecutorService, { maxConcurrency: 4 }, { poolSize: 1 });
  const python = await services.get("python");
  const run = await python.execute("print(6 * 7)");
  console.log(`python: ${run.stdout.trim()}`);

  // 4. Batched inference over NATS: the model sees one batch for many requests.
  const transport = new NatsTransport({ connection: services.connection, namespace, name: "policy" });
  const double = (batch) => batch.map((x) => x * 2);
  const server = await new InferenceServer(double, transport, { maxBatchSize: 8, collate: (items) => items }).start();
  await registerInference(services, "policy", server);
  const policy = await inferenceClient(services, "policy");
  console.log(`inference: ${JSON.stringify(await Promise.all([1, 2, 3].map((x) => policy.call(x))))}, batches: ${server.stats().batches}`);
  await policy.close();
} finally {
  await services.close();
}
console.log("done");
