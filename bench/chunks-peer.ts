/**
 * The other process of the large-value benchmark (bench/chunks.ts). `raw` echoes a value sent in
 * 1 MB core NATS messages: it gathers the chunks into one buffer, then publishes them back in
 * chunks. Prints "ready", then runs until stdin closes.
 */
import { connect } from "@nats-io/transport-node";

const [mode, url] = process.argv.slice(2) as [string, string];
const untilStdinCloses = () => new Promise((r) => (process.stdin.resume(), process.stdin.once("end", r).once("close", r)));

if (mode === "raw") {
  const nc = await connect({ servers: url, noAsyncTraces: true });
  let buf: Uint8Array | undefined;
  let got = 0;
  // Header message: [total, chunkSize] as text; then the chunks, in order (one publisher, one subscriber).
  let total = 0;
  let chunk = 0;
  nc.subscribe("bench.chunks.in", {
    callback: (_e, m) => {
      if (buf === undefined) {
        [total, chunk] = new TextDecoder().decode(m.data).split(",").map(Number) as [number, number];
        buf = new Uint8Array(total);
        got = 0;
        return;
      }
      buf.set(m.data, got);
      got += m.data.length;
      if (got < total) return;
      const out = buf;
      buf = undefined;
      for (let at = 0; at < total; at += chunk) nc.publish("bench.chunks.out", out.subarray(at, at + chunk));
    },
  });
  await nc.flush();
  console.log("ready");
  await untilStdinCloses();
  await nc.drain();
}
