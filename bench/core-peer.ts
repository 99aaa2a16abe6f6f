/**
 * The other process of the core benchmark: `raw` answers nats.js requests by echoing bytes,
 * `actor` hosts an actorbus echo service, `moleculer` a Moleculer echo service over its NATS
 * transporter, `watch` reports registry events with their delay.
 * Prints "ready", then runs until stdin closes.
 */
import { connect } from "@nats-io/transport-node";
import { getServices } from "../src/index.ts";
import { moleculerBroker } from "./moleculer.ts";

const [mode, url, namespace] = process.argv.slice(2) as [string, string, string];
const now = () => performance.timeOrigin + performance.now();
const untilStdinCloses = () => new Promise((r) => (process.stdin.resume(), process.stdin.once("end", r).once("close", r)));

if (mode === "raw") {
  const nc = await connect({ servers: url, noAsyncTraces: true });
  // A queue group, so that responders of the n:n benchmark share the requests as hosts do.
  nc.subscribe("bench.raw", { queue: "raw", callback: (_e, m) => void m.respond(m.data) });
  await nc.flush();
  console.log("ready");
  await untilStdinCloses();
  await nc.drain();
} else if (mode === "actor") {
  const services = await getServices({ servers: url, namespace });
  // serve(): several host processes of the n:n benchmark share the name's queue group.
  await services.serve("echo", class Echo {
    echo(v: unknown) {
      return v;
    }
  }, {});
  if (process.argv.includes("--holder")) {
    // Calls that wait until released: the memory of calls in flight, in caller and host.
    let release: () => void = () => {};
    let held = new Promise<void>((r) => (release = r));
    await services.registerWithOptions("holder", class Holder {
      hold() {
        return held;
      }
      release() {
        release();
        held = new Promise<void>((r) => (release = r));
      }
      memory() {
        (globalThis as { gc?: () => void }).gc?.();
        return process.memoryUsage();
      }
    }, { maxConcurrency: 20_000, maxPending: 20_000 });
  }
  console.log("ready");
  await untilStdinCloses();
  await services.close();
} else if (mode === "moleculer") {
  const broker = await moleculerBroker(url, "echo");
  broker.createService({ name: "echo", actions: { echo: (ctx: { params: unknown }) => ctx.params } });
  await broker.start();
  console.log("ready");
  await untilStdinCloses();
  await broker.stop();
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
