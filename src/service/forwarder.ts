import { RELAY, type Relay } from "../actor/index.ts";
import { RECORD_KIND } from "../registry/index.ts";

/**
 * The registry's view of the service: an object with the class's methods, registered through
 * the ordinary register path with record kind "service". Its host relays each call's bytes to
 * the router (RELAY) instead of decoding them and calling a method; the methods are there for
 * the host's method check and for `actorbus ls`. Its disposal (a registry reset or remove from
 * any worker) shuts the service down.
 */
export function forwarderClass(className: string, methods: string[], relay: Relay, onDispose: () => Promise<void> | undefined) {
  const Forwarder = class {};
  Object.defineProperty(Forwarder, "name", { value: className });
  for (const m of methods) {
    Object.defineProperty(Forwarder.prototype, m, {
      // Never called: the host relays. Present so that callable-method discovery lists it.
      value: () => Promise.reject(new Error(`${className}.${m} is relayed, not run, here`)),
      writable: true,
      configurable: true,
    });
  }
  Object.defineProperty(Forwarder.prototype, RELAY, { value: relay });
  Object.defineProperty(Forwarder.prototype, Symbol.asyncDispose, {
    // Not awaited when the service itself is shutting down: that shutdown is what disposes us.
    value: async () => void (await onDispose()),
  });
  (Forwarder as unknown as Record<symbol, unknown>)[RECORD_KIND] = "service";
  return Forwarder;
}
