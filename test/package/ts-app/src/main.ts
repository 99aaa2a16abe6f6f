// A TypeScript consumer: compiled by tsc (NodeNext, strict) and run with plain node, or run as
// .ts under a loader (tsx, or Node's type stripping); replicas must load Counter either way.
import { getServices, InvalidOptionsError, type ServiceHandle } from "actorbus";
import { Counter } from "./counter.ts";

interface Echo {
  echo(text: string): Promise<string>;
}

const namespace = process.env.ACTORBUS_NAMESPACE ?? "ts_consumer";
await using services = await getServices({ namespace });

await services.register("echo", class {
  echo(text: string): string {
    return `echo: ${text}`;
  }
});
const echo: ServiceHandle<Echo> = await services.get<Echo>("echo");
console.log(await echo.echo("typed"));

try {
  await getServices({ namespace, timeoutMs: Number.NaN });
} catch (err) {
  console.log(`bad options: ${err instanceof InvalidOptionsError ? err.code : String(err)}`);
}

const Configured = Counter.options({ numReplicas: 2, namespace });
const counter = await Configured.asService(5);
try {
  const n: number = await counter.incr(2);
  const pids = new Set((await counter.whoami.fanout()).map((w) => w.pid));
  console.log(`replicas: ${pids.size}, first: ${n}, numReplicas: ${Configured.numReplicas}`);
} finally {
  await counter.shutdown();
}
console.log("done");
