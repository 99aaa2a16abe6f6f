import { ProxyTracerProvider, trace, type Tracer, type TracerProvider } from "@opentelemetry/api";

/** The instrumentation scope of every span actorbus makes. */
export const TRACER_NAME = "actorbus";

// What the API's global proxy delegates to until an SDK registers: the one no-op provider.
const NOOP_PROVIDER: TracerProvider = new ProxyTracerProvider().getDelegate();

const off = (): undefined => undefined;

/**
 * A getter of actorbus' tracer, or undefined while no SDK is registered (each call site then
 * skips all tracing work). Each owner (handle, host, transport) keeps its own getter: the check
 * is a few property reads per call and allocates nothing, and an SDK registered after the owner
 * was made is picked up on its next call.
 *
 * `ACTORBUS_TRACING=off` takes an owner's instrumentation out whatever the application
 * registered: an escape hatch, and the benchmark's baseline. Read when the owner is made, so
 * the call path never looks at the environment (and one process can hold both kinds).
 */
export function tracerSource(): () => Tracer | undefined {
  if (process.env.ACTORBUS_TRACING === "off") return off;
  let seen = NOOP_PROVIDER;
  let tracer: Tracer | undefined;
  return () => {
    const global = trace.getTracerProvider();
    // The API hands out its proxy; what counts is what the proxy delegates to.
    const real = (global as Partial<ProxyTracerProvider>).getDelegate?.() ?? global;
    if (real !== seen) {
      seen = real;
      tracer = real === NOOP_PROVIDER ? undefined : real.getTracer(TRACER_NAME);
    }
    return tracer;
  };
}
