import { Actor, currentCall } from "../../src/index.ts";

/**
 * A toy LLM: streams tokens as it "generates" them, and stops as soon as its caller stops
 * listening (break, cancel or deadline), like a model server freeing its batch slot.
 */
export class TokenGenerator extends Actor {
  static override module = import.meta.url;
  stopped = 0;

  async *generate(prompt: string, maxTokens = 100): AsyncGenerator<string> {
    const { signal, metadata } = currentCall();
    try {
      for (let i = 0; i < maxTokens && !signal.aborted; i++) {
        await new Promise((r) => setTimeout(r, 2)); // one decoding step
        yield `${metadata.user ?? "anon"}:${prompt}#${i}`;
      }
    } finally {
      this.stopped++;
    }
  }

  stops(): number {
    return this.stopped;
  }
}
