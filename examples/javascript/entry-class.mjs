// What not to do: the Actor class lives in the entry module that launches it. Replicas import
// the class's module, which would run this launch code again in each of them; actorbus refuses
// at once with an error that names the fix (see tokenizer.mjs for the right layout).
import { Actor } from "actorbus";

export class Inline extends Actor {
  ping() {
    return "pong";
  }
}

const svc = await Inline.asService();
console.log(await svc.ping());
await svc.shutdown();
