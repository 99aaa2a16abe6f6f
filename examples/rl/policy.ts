import { Actor } from "../../src/index.ts";

export const OBS_DIM = 8;
/** 64 Ki floats (256 KB) per update: one argument, well under the server's max_payload. */
export const WEIGHTS = 65_536;

/**
 * A linear policy replica. `version` is the weights' version: actorbus reads it after every call
 * and routes calls with `minVersion` by it. `loadWeights` copies the new weights in slices and
 * yields between them, as a copy to a GPU would, so mid-update the replica holds half old, half
 * new weights: a rolling update keeps calls away from it until the copy is done.
 */
export class LinearPolicy extends Actor {
  static override module = import.meta.url;
  version = 0;
  private weights = new Float32Array(WEIGHTS);
  private loading = false;

  async loadWeights(weights: Float32Array, version: number): Promise<number> {
    this.loading = true;
    try {
      const slice = Math.ceil(weights.length / 4);
      for (let at = 0; at < weights.length; at += slice) {
        this.weights.set(weights.subarray(at, at + slice), at);
        await new Promise((r) => setTimeout(r, 10));
      }
      this.version = version; // only once every slice is in
    } finally {
      this.loading = false;
    }
    return this.version;
  }

  /** One rollout step: the action for `obs`, and the behaviour-policy version that chose it. */
  async act(obs: Float32Array): Promise<{ action: number; version: number; halfUpdated: boolean }> {
    let action = 0;
    for (let i = 0; i < OBS_DIM; i++) action += obs[i]! * this.weights[i]!;
    return { action, version: this.version, halfUpdated: this.loading };
  }
}
