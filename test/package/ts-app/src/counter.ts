import { Actor } from "actorbus";

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

  async whoami(): Promise<{ pid: number; rank: number }> {
    return { pid: process.pid, rank: this.rank };
  }
}
