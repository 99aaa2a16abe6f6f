/**
 * Publishes held back while a connection reconnects during a lame-duck move (lame-duck.ts):
 * nats.js 3.4 resets its outbound buffer on every dial, so what is published between the
 * disconnect and the reconnect would be lost; here it waits and leaves in order afterwards.
 */
import type { NatsConnection } from "@nats-io/transport-node";

type Publish = (subject: string, data?: Uint8Array, options?: unknown) => void;

/**
 * What the wrappers of one nats.js connection share (wrapNatsConnection may wrap one several
 * times, e.g. inference transports given a raw connection): publishes parked while it
 * reconnects, and the reconnect itself, made once, when every wrapper has let its requests in
 * flight finish.
 */
export interface Shared {
  wrappers: number;
  /** nats.js's own publish of the protocol handler, once it is wrapped (at the first move). */
  original: Publish | undefined;
  parked: [string, Uint8Array | undefined, unknown][] | undefined;
  move: { expected: number; arrived: number; go(): void; reconnected: Promise<boolean> } | undefined;
}
// Kept beside each nats.js connection (as connection.ts keeps credentials), not on it: several
// wrappers of one connection must find the same record, and it goes with the connection.
const sharedByConnection = new WeakMap<NatsConnection, Shared>();

export function sharedOf(nc: NatsConnection): Shared {
  let s = sharedByConnection.get(nc);
  if (!s) sharedByConnection.set(nc, (s = { wrappers: 0, original: undefined, parked: undefined, move: undefined }));
  return s;
}

/** From now on the connection's publishes (replies included: Msg.respond goes straight to the protocol handler) wait. */
export function park(nc: NatsConnection, s: Shared): void {
  const protocol = (nc as unknown as { protocol?: { publish: Publish } }).protocol;
  if (!protocol) return;
  if (!s.original) {
    const original = protocol.publish.bind(protocol);
    s.original = original;
    protocol.publish = (subject, data, options) => {
      if (s.parked) s.parked.push([subject, data, options]);
      else original(subject, data, options);
    };
  }
  s.parked ??= [];
}

/** The parked publishes leave, in order. */
export function unpark(s: Shared): void {
  const list = s.parked;
  s.parked = undefined;
  for (const [subject, data, options] of list ?? []) {
    try {
      s.original!(subject, data, options);
    } catch {
      // closed meanwhile: nothing left to deliver it
    }
  }
}
