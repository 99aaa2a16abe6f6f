/**
 * One client process of the n:n benchmark: `node nn-client.ts <raw|actorbus|moleculer> <url>
 * <namespace> <inFlight> <total>`. Connects, prints "ready", waits for a line on stdin, keeps
 * `inFlight` calls outstanding until `total` complete, prints its calls/s, and exits.
 */
import { connect } from "@nats-io/transport-node";
import { createInterface } from "node:readline";
import { getServices } from "../src/index.ts";
import { pipelined } from "./lib.ts";
import { moleculerClient } from "./moleculer.ts";

const [mode, url, namespace, inFlight, total] = process.argv.slice(2) as [string, string, string, string, string];
const payload = { text: "hello world", ids: [1, 2, 3, 4, 5, 6, 7, 8], step: 42 };
let call: () => Promise<unknown>;
let close: () => Promise<unknown>;
if (mode === "raw") {
  const nc = await connect({ servers: url, noAsyncTraces: true });
  const bytes = (await import("../src/index.ts")).createCodec().encode([payload]);
  call = () => nc.request("bench.raw", bytes, { timeout: 30_000 });
  close = () => nc.close();
} else if (mode === "actorbus") {
  const services = await getServices({ servers: url, namespace });
  const echo = await services.get<{ echo(v: unknown): unknown }>("echo");
  call = () => echo.echo(payload) as Promise<unknown>;
  close = () => services.close();
} else {
  const m = await moleculerClient(url);
  call = () => m.call(payload);
  close = () => m.stop();
}
console.log("ready");
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
await lines.next();
const r = await pipelined(Number(total), Number(inFlight), call);
console.log(JSON.stringify(r));
await close();
process.exit(0);
