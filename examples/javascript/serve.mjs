// Registers the "tokenizer" service and serves it until stdin closes (or SIGTERM).
//   NATS_URL=nats://127.0.0.1:4222 node serve.mjs
import { getServices } from "actorbus";
import { Tokenizer } from "./tokenizer.mjs";

const services = await getServices({ namespace: process.env.ACTORBUS_NAMESPACE ?? "js_example" });
await services.register("tokenizer", Tokenizer, "tiny");
console.log("serving tokenizer");
const stop = async () => {
  await services.close();
  process.exit(0);
};
process.stdin.on("end", stop).resume();
process.once("SIGTERM", stop);
