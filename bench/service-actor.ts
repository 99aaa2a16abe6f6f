import { createHash } from "node:crypto";
import { Actor } from "../src/service/index.ts";

/** The benchmark's actor: a trivial method, a sleeping one and a CPU-bound one. */
export class BenchCounter extends Actor {
  static override module = import.meta.url;
  n = 0;

  async incr(by = 1): Promise<number> {
    this.n += by;
    return this.n;
  }

  async sleep(ms: number): Promise<number> {
    await new Promise((r) => setTimeout(r, ms));
    return ++this.n;
  }

  /** `ms` of SHA-256 chaining: CPU work that only more processes can parallelize. */
  async hash(ms: number): Promise<number> {
    const end = performance.now() + ms;
    let h = Buffer.alloc(32);
    let n = 0;
    while (performance.now() < end) {
      h = createHash("sha256").update(h).digest();
      n++;
    }
    return n;
  }
}
