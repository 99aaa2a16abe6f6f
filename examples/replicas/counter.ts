import { Actor } from "../../src/index.ts";

/**
 * A stateful actor. Each replica is its own process (constructed with the arguments given to
 * asService()), so each has its own count; `static module` lets replica processes import it.
 */
export class Counter extends Actor {
  static override module = import.meta.url;
  n: number;

  constructor(start = 0) {
    super();
    this.n = start;
  }

  async incr(by = 1): Promise<number> {
    this.n += by;
    return this.n;
  }

  async slowIncr(ms: number): Promise<number> {
    await new Promise((r) => setTimeout(r, ms));
    return ++this.n;
  }

  async whoami(): Promise<{ host: string; rank: number; size: number; pid: number }> {
    return { host: this.host, rank: this.rank, size: this.size, pid: process.pid };
  }
}
