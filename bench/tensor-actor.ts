import { Actor } from "../src/service/index.ts";

/** The replica of the large-value benchmark: answers a tensor with a tensor of the same size. */
export class TensorEcho extends Actor {
  static override module = import.meta.url;

  async echo(x: Float32Array): Promise<Float32Array> {
    return x;
  }
}
