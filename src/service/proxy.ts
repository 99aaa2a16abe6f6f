import type { ServiceHandle } from "../actor/index.ts";
import { mergeCallOptions, ROLLING, rollingOptions, WITH_OPTIONS, type ResolvedCallOptions, type ResolvedRollingOptions, type RollingOptions } from "../call/index.ts";
import { streamable } from "../stream/index.ts";
import { bool, defineOptions, type SpecFor } from "../options/index.ts";
import type { ServiceController } from "./controller.ts";
import type { SessionState } from "./routed-calls.ts";
import type { ServiceProxy, SessionHandle, SessionOptions } from "./types.ts";

const sessionOptions = defineOptions("session options", { rebind: bool() } satisfies SpecFor<SessionOptions>, { rebind: false }, { example: "{ rebind: true }" });

// Names generic code probes on any object (await, inspection, test matchers): never endpoints.
const NOT_REMOTE = new Set(["then", "catch", "finally", "toJSON", "constructor", "valueOf", "toString", "toLocaleString", "inspect", "asymmetricMatch", "$$typeof", "nodeType"]);

const CONTROLLER = Symbol.for("actorbus.serviceController");
const SESSION = Symbol.for("actorbus.session");

/** The controller behind a service proxy (undefined for other values). */
export function controllerOf(value: unknown): ServiceController | undefined {
  return (value as Record<symbol, ServiceController> | null)?.[CONTROLLER];
}

export interface SessionInfo {
  id: string;
  /** Index of the replica the session is bound to (undefined before its first call). */
  replica: number | undefined;
  ended: boolean;
}

/** The id and binding of a session handle (undefined for other values). */
export function sessionInfo(value: unknown): SessionInfo | undefined {
  const s = (value as Record<symbol, SessionState> | null)?.[SESSION];
  return s ? { id: s.id, replica: s.replica?.index, ended: s.closed } : undefined;
}

/** `svc.method(...)`, `.route`, `.fanout`, `.ranks`, `.rolling`; each form also takes withOptions(). */
function endpoint(c: ServiceController, method: string, call?: ResolvedCallOptions) {
  const opts = call ? { call } : undefined;
  const fn = (...args: unknown[]) => streamable(c.call(method, args, opts));
  const fanout = (...args: unknown[]) => c.fanout(method, args, opts);
  const ranks = (...args: unknown[]) => c.call(method, args, { ...opts, ranks: true });
  const rebind = (more: ResolvedCallOptions) => endpoint(c, method, mergeCallOptions(call, more));
  Object.defineProperty(fanout, WITH_OPTIONS, { value: (more: ResolvedCallOptions) => rebind(more).fanout });
  Object.defineProperty(ranks, WITH_OPTIONS, { value: (more: ResolvedCallOptions) => rebind(more).ranks });
  Object.defineProperty(fn, WITH_OPTIONS, { value: rebind });
  return Object.assign(fn, { route: fn, fanout, ranks, rolling: rollingForm(c, method, call, rollingOptions.defaults()) });
}

/**
 * `svc.method.rolling(...)`: call options come through withOptions() like every form's; the
 * roll's own (maxUnavailable) through `.with()`, checked there, so a typo fails where it is made.
 */
function rollingForm(c: ServiceController, method: string, call: ResolvedCallOptions | undefined, ro: ResolvedRollingOptions) {
  const roll = (...args: unknown[]) => c.rolling(method, args, call, ro);
  Object.defineProperty(roll, WITH_OPTIONS, { value: (more: ResolvedCallOptions) => rollingForm(c, method, mergeCallOptions(call, more), ro) });
  return Object.assign(roll, {
    with: (options: RollingOptions) => {
      const where = `${c.name}.${method}.rolling.with()`;
      rollingOptions.check(options, where);
      return rollingForm(c, method, call, rollingOptions.parse({ ...ro, ...rollingOptions.pick(options) }, where));
    },
  });
}

function sessionHandle<T>(c: ServiceController, s: SessionState, call?: ResolvedCallOptions): SessionHandle<T> {
  const cache = new Map<string, (...a: unknown[]) => Promise<unknown>>();
  return new Proxy(Object.create(null), {
    get(_t, prop) {
      if (prop === SESSION) return s;
      if (prop === WITH_OPTIONS) return (more: ResolvedCallOptions) => sessionHandle<T>(c, s, mergeCallOptions(call, more));
      if (prop === Symbol.asyncDispose) return async () => c.closeSession(s);
      if (prop === Symbol.for("nodejs.util.inspect.custom")) return () => `Session(${c.namespace}/${c.name} ${s.id})`;
      if (typeof prop === "symbol" || NOT_REMOTE.has(prop)) return undefined;
      let fn = cache.get(prop);
      if (!fn) cache.set(prop, (fn = (...args: unknown[]) => streamable(c.call(prop, args, { session: s, call }))));
      return fn;
    },
    set: () => false,
  }) as SessionHandle<T>;
}

export function createServiceProxy<T>(c: ServiceController, call?: ResolvedCallOptions): ServiceProxy<T> {
  const cache = new Map<string, ReturnType<typeof endpoint>>();
  const ep = (m: string) => {
    let e = cache.get(m);
    if (!e) cache.set(m, (e = endpoint(c, m, call)));
    return e;
  };
  const controls: Record<string, unknown> = {
    shutdown: () => c.shutdown(),
    status: () => c.report(),
    endpoint: (m: string) => ep(m),
    session: (fnOrOptions?: ((s: ServiceHandle<T>) => Promise<unknown>) | SessionOptions, maybeOptions?: SessionOptions) => {
      if (typeof fnOrOptions === "function") {
        let rebind: boolean;
        try {
          rebind = sessionOptions.parse(maybeOptions).rebind;
        } catch (err) {
          return Promise.reject(err);
        }
        const s = c.openSession(rebind);
        return (async () => {
          try {
            return await fnOrOptions(sessionHandle<T>(c, s, call));
          } finally {
            c.closeSession(s);
          }
        })();
      }
      return sessionHandle<T>(c, c.openSession(sessionOptions.parse(fnOrOptions).rebind), call);
    },
  };
  return new Proxy(Object.create(null), {
    get(_t, prop) {
      if (prop === CONTROLLER) return c;
      if (prop === WITH_OPTIONS) return (more: ResolvedCallOptions) => createServiceProxy<T>(c, mergeCallOptions(call, more));
      if (prop === ROLLING) return (ro: ResolvedRollingOptions) => new Proxy(Object.create(null), { get: (_r, m) => (typeof m === "string" && !NOT_REMOTE.has(m) ? rollingForm(c, m, call, ro) : undefined) });
      if (prop === Symbol.for("nodejs.util.inspect.custom")) return () => `Service(${c.namespace}/${c.name})`;
      if (prop === Symbol.asyncDispose) return () => c.shutdown();
      if (typeof prop === "symbol" || NOT_REMOTE.has(prop)) return undefined;
      if (Object.hasOwn(controls, prop)) return controls[prop];
      return ep(prop);
    },
    has: (_t, prop) => typeof prop === "string" && !NOT_REMOTE.has(prop),
    set: () => false,
  }) as ServiceProxy<T>;
}
