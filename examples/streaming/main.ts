/**
 * Streaming, cancellation and per-call options on a replicated service:
 *
 *   npx tsx examples/streaming/main.ts        (NATS_URL, else localhost or a private nats-server)
 *
 * Two replicas of a token generator; a stream read to its end, one cut short with `break`, one
 * cancelled with an AbortController, one bounded by a deadline; metadata reaches the replica.
 */
import { CallTimeoutError, CancelledError, withOptions } from "../../src/index.ts";
import { TokenGenerator } from "./generator.ts";

const namespace = process.env.ACTORBUS_EXAMPLE_NAMESPACE ?? "streaming_example";
const svc = await TokenGenerator.options({ numReplicas: 2, namespace, router: "round-robin" }).asService();
try {
  const user = withOptions(svc, { metadata: { user: "ada" } });

  const all: string[] = [];
  for await (const t of user.generate("hello", 5)) all.push(t);
  console.log(`full stream: ${all.join(" ")}`);

  let n = 0;
  for await (const _ of user.generate("long story", 1_000)) if (++n === 3) break;
  console.log(`break after ${n} tokens`);

  const ac = new AbortController();
  let got = 0;
  const cancelled = await (async () => {
    for await (const _ of withOptions(user, { signal: ac.signal }).generate("cancel me", 1_000)) if (++got === 5) ac.abort();
  })().catch((e) => e);
  console.log(`cancelled after ${got} tokens: ${cancelled instanceof CancelledError}`);

  const late = await (async () => {
    for await (const _ of withOptions(user, { timeoutMs: 100 }).generate("slow", 1_000));
  })().catch((e) => e);
  console.log(`deadline: ${late instanceof CallTimeoutError}`);

  // Each replica ran its generator's finally for the streams it served.
  let stops = 0;
  for (let i = 0; i < 50 && stops < 4; i++) {
    stops = (await svc.stops.fanout()).reduce((a, b) => a + b, 0);
    if (stops < 4) await new Promise((r) => setTimeout(r, 20));
  }
  console.log(`generators closed on the replicas: ${stops}`);
} finally {
  await svc.shutdown();
}
