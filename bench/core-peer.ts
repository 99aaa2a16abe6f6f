/**
 * The other process of the core benchmark: `raw` answers nats.js requests by echoing bytes,
 * `actor` hosts an actorbus echo service, `watch` reports registry events with their delay.
 * Prints "ready", then runs until stdin closes.
 */
import { connect } from "@nats-io/transport-node";
import { getServices } from "../src/index.ts";

const [mode, url, namespace] = process.argv.slice(2) as [string, string, string];
const now = () => performance.timeOrigin + performance.now();
const untilStdinCloses = () => new Promise((r) => (process.stdin.resume(), process.stdin.once("end", r).once("close", r)));

if (mode === "raw") {
  const nc = await connect({ servers: url, noAsyncTraces: true });
  nc.subscribe("bench.raw", { callback: (_e, m) => void m.respond(m.data) });
  await nc.flush();
  console.log("ready");
  await untilStdinCloses();
  await nc.drain();
} else if (mode === "actor") {
  const services = await getServices({ servers: url, namespace });
  await services.register("echo", class Echo {
    echo(v: unknown) {
      return v;
    }
  });
  console.log("ready");
  await untilStdinCloses();
  await services.close();
} else if (mode === "watch") {
  const services = await getServices({ servers: url, namespace });
  const watch = services.watch();
  await watch.ready();
  console.log("ready");
  (async () => {
    for await (const e of watch) {
      if (e.type === "registered") console.log(String(now() - Number(e.record.metadata.sentAt)));
    }
  })();
  await untilStdinCloses();
  await services.close();
}
