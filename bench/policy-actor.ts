import { Actor } from "../src/service/index.ts";

/**
 * The rolling-update benchmark's replica: weights staged in chunks (each call under the server's
 * max_payload), then committed by the rolling call, which copies them into the live weights over
 * several turns of the event loop (as an async copy to a device would) and bumps the version.
 */
export class BenchPolicy extends Actor {
  static override module = import.meta.url;
  version = 0;
  private live = new Float32Array(0);
  private staged = new Float32Array(0);
  private loading = false;

  /** One chunk of the next weights, at `offset` floats into a buffer of `total` floats. */
  async stage(total: number, offset: number, chunk: Float32Array): Promise<number> {
    if (this.staged.length !== total) this.staged = new Float32Array(total);
    this.staged.set(chunk, offset);
    return chunk.length;
  }

  /**
   * Copies the staged weights in, 16 slices with a turn of the event loop (or `sliceMs`) between,
   * then bumps the version.
   */
  async commit(version: number, sliceMs = 0): Promise<number> {
    this.loading = true;
    try {
      if (this.live.length !== this.staged.length) this.live = new Float32Array(this.staged.length);
      const slice = Math.ceil(this.staged.length / 16);
      for (let at = 0; at < this.staged.length; at += slice) {
        this.live.set(this.staged.subarray(at, at + slice), at);
        await new Promise((r) => (sliceMs > 0 ? setTimeout(r, sliceMs) : setImmediate(r)));
      }
      this.version = version;
    } finally {
      this.loading = false;
    }
    return this.version;
  }

  /**
   * New weights as the call's argument (over max_payload: pulled in chunks as the call starts),
   * copied in over 16 turns of the event loop, then the version bumped.
   */
  async load(weights: Float32Array, version: number): Promise<number> {
    this.loading = true;
    try {
      if (this.live.length !== weights.length) this.live = new Float32Array(weights.length);
      const slice = Math.ceil(weights.length / 16);
      for (let at = 0; at < weights.length; at += slice) {
        this.live.set(weights.subarray(at, at + slice), at);
        await new Promise((r) => setImmediate(r));
      }
      this.version = version;
    } finally {
      this.loading = false;
    }
    return this.version;
  }

  /** A served call: fails if it reached the replica mid-commit. */
  async act(x: number): Promise<number> {
    if (this.loading) throw new Error("reached a replica mid-update");
    return x * (this.live[0] ?? 1);
  }
}
