/**
 * The host process of bench/calls.ts: `gen` serves an actorbus service with streaming methods;
 * `raw` answers a hand-written nats.js stream with the same credit window. Prints "ready", then
 * runs until stdin closes.
 */
import { connect } from "@nats-io/transport-node";
import { createCodec, getServices } from "../src/index.ts";

const [mode, url, namespace] = process.argv.slice(2) as [string, string, string];
const untilStdinCloses = () => new Promise((r) => (process.stdin.resume(), process.stdin.once("end", r).once("close", r)));
export const WINDOW = 64;

if (mode === "gen") {
  const services = await getServices({ servers: url, namespace });
  await services.register("gen", class Gen {
    async *items(n: number) {
      for (let i = 0; i < n; i++) yield { i };
    }
    rss() {
      return process.memoryUsage().rss;
    }
  });
  console.log("ready");
  await untilStdinCloses();
  await services.close();
} else if (mode === "raw") {
  // A stream by hand: the request names the consumer's inbox and credit subject; items go out
  // while credit lasts, and the consumer grants more every half window, as actorbus does.
  const codec = createCodec();
  const nc = await connect({ servers: url, noAsyncTraces: true });
  nc.subscribe("bench.stream", {
    callback: (_e, m) => {
      const [n, inbox, creditSubject] = codec.decode<[number, string, string]>(m.data);
      let sent = 0;
      let credit = WINDOW;
      const pump = () => {
        while (credit > 0 && sent < n) {
          nc.publish(inbox, codec.encode([3, { i: sent++ }]));
          credit--;
        }
        if (sent === n) {
          nc.publish(inbox, codec.encode([4]));
          sub.unsubscribe();
        }
      };
      const sub = nc.subscribe(creditSubject, { callback: (_e2, c) => ((credit += codec.decode<[number, number]>(c.data)[1]), pump()) });
      pump();
    },
  });
  await nc.flush();
  console.log("ready");
  await untilStdinCloses();
  await nc.drain();
}
