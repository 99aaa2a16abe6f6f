// Two kinds of service, each in a module of its own: replica processes import the module that
// exports the class, so a class never lives in the entry file that launches it.
import { Actor } from "actorbus";

/** A plain class: registered by name, hosted in the process that registers it. */
export class Tokenizer {
  constructor(vocab = "tiny") {
    this.vocab = vocab;
  }
  tokenize(text) {
    return text.split(/\s+/).filter(Boolean);
  }
  bytes(data) {
    return { isUint8Array: Object.getPrototypeOf(data) === Uint8Array.prototype, length: data.length };
  }
}

/** An Actor subclass: asService() runs each replica in a process of its own. */
export class Counter extends Actor {
  static module = import.meta.url;
  constructor(start = 0) {
    super();
    this.n = start;
  }
  incr(by = 1) {
    this.n += by;
    return this.n;
  }
  whoami() {
    return { pid: process.pid, host: this.host };
  }
}
