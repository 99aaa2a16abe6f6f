import { RECORD_KIND } from "../registry/index.ts";

/**
 * The registry's view of the service: an object with the class's methods that relays each call
 * to the router, registered through the ordinary register path with record kind "service".
 * Its disposal (a registry reset or remove from any worker) shuts the service down.
 */
export function forwarderClass(className: string, methods: string[], route: (method: string, args: unknown[]) => Promise<unknown>, onDispose: () => Promise<void> | undefined) {
  const Forwarder = class {};
  Object.defineProperty(Forwarder, "name", { value: className });
  for (const m of methods) {
    Object.defineProperty(Forwarder.prototype, m, {
      value: (...args: unknown[]) => route(m, args),
      writable: true,
      configurable: true,
    });
  }
  Object.defineProperty(Forwarder.prototype, Symbol.asyncDispose, {
    // Not awaited when the service itself is shutting down: that shutdown is what disposes us.
    value: async () => void (await onDispose()),
  });
  (Forwarder as unknown as Record<symbol, unknown>)[RECORD_KIND] = "service";
  return Forwarder;
}
