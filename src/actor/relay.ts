import type { HostedCall } from "./hosted-call.ts";

/**
 * An instance that relays calls instead of running them (a replicated service's registry face):
 * it gets the encoded arguments and returns the encoded reply, so neither is decoded on the way.
 */
export const RELAY = Symbol.for("actorbus.relay");
export type Relay = (call: HostedCall, payload: Uint8Array) => Promise<Uint8Array>;

export function relayOf(instance: object): Relay | undefined {
  return (instance as Record<symbol, unknown>)[RELAY] as Relay | undefined;
}
