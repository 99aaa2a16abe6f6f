import { nuid } from "@nats-io/transport-node";

/**
 * Call ids: unique across processes (a nuid per generator) and cheap per call (a counter).
 * Hosts key cancellation on them, and relays pass them on, so one call keeps one id end to end.
 */
export function createCallIds(): () => string {
  const prefix = nuid.next();
  let n = 0;
  return () => `${prefix}.${(n++).toString(36)}`;
}
