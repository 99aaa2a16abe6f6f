/**
 * Which replica takes a call: the pluggable router of a service (Ray Serve's request routers,
 * TorchForge's Router, piscina's balancers). A pure module: no NATS, no timers, no module state;
 * each router object keeps its own cursor.
 *
 * Strategies (`options({ router })`):
 * - "least-loaded" (default): fewest outstanding calls; ties rotate; when binding a session,
 *   fewer sessions breaks a tie of outstanding calls. Exactly the controller's routing before
 *   routers existed.
 * - "round-robin": the next replica with room after the previous pick, in replica order.
 * - "random": uniform among the replicas with room.
 * - a function `(candidates, call) => candidate | undefined`: sees frozen ReplicaViews of the
 *   replicas with room only (never a full, unhealthy or suspect one) and the call (method, args,
 *   metadata, session). It returns one of `candidates`, or undefined (or null) for "no
 *   preference" (least-loaded then chooses among the same candidates). Anything else (another
 *   object, a stale view from an earlier call, a Promise) is a RouterError, as is a throw: a bug
 *   in a router fails the call loudly rather than being routed around silently. It runs on every
 *   call's path, so it must be synchronous and quick.
 *
 * How the controller calls it (no allocation per call for the built-ins):
 *
 *   const router = createRouter(o.router, {
 *     capacity,                                              // maxConcurrency + maxPending
 *     usable: (r: Replica) => r.state === "healthy" && !r.suspect,   // made once, not per call
 *   });
 *   // candidates = the controller's own `replicas` array, as is: the router skips unusable and
 *   // full replicas itself, reading r.index / r.outstanding / r.sessions (Replica fits Routable).
 *   const pick = (session: boolean) => router.pick(replicas, session ? SESSION_CALL : ANY_CALL);
 *   // Built-ins read only request.session, so the shared constants above do. When
 *   // router.readsCall is true (a user function), pass the call instead:
 *   //   router.pick(replicas, { method, args, metadata: opts?.metadata ?? NO_METADATA, session })
 *
 * pick() returns undefined when no replica is usable with room (awaitReplica then waits or
 * throws OverloadedError as today). It throws RouterError only for user functions: call it where
 * a throw becomes the call's rejection (inside attempt's try, not in call()'s synchronous path
 * outside it). A session consults the router once, when it binds (session: true); its later calls
 * go to the bound replica. With `routing: "queue-group"` NATS picks and no router runs, so giving
 * both is refused by the options (see options.ts).
 */
import { InvalidOptionsError } from "../errors/index.ts";
import { fail, suggest, type Check } from "../options/index.ts";
import { RouterError } from "./errors.ts";

export const ROUTERS = ["least-loaded", "round-robin", "random"] as const;
export type RouterName = (typeof ROUTERS)[number];

/** What a router function sees of one replica: a frozen snapshot taken for this call. */
export interface ReplicaView {
  /** The replica's number, 0-based, stable across its restarts. */
  readonly index: number;
  /** Calls sent to it and not yet settled (running and queued). */
  readonly outstanding: number;
  /** Calls it may hold at once (maxConcurrency + maxPending). */
  readonly capacity: number;
  /** capacity - outstanding; always >= 1, since full replicas are never offered. */
  readonly room: number;
  /** Sticky sessions bound to it. */
  readonly sessions: number;
}

/** The call being routed. */
export interface RouteRequest {
  readonly method: string;
  readonly args: readonly unknown[];
  /** The caller's metadata (trace context, tenant, ...); empty when none was given. */
  readonly metadata: Readonly<Record<string, string>>;
  /** True when the call binds a sticky session: the pick keeps the session's later calls. */
  readonly session?: boolean;
}

/** A user router: one of `candidates` (all have room), or undefined to let least-loaded choose. */
export type RouterFunction = (candidates: readonly ReplicaView[], call: RouteRequest) => ReplicaView | undefined;

/** The `router` option: a strategy's name or a function. */
export type RouterSpec = RouterName | RouterFunction;

/** The fields a router reads of a candidate (the controller's Replica records have them). */
export interface Routable {
  readonly index: number;
  readonly outstanding: number;
  readonly sessions: number;
}

export interface RouterConfig<R extends Routable> {
  /** Calls one replica may hold; a candidate with outstanding >= capacity is full. Default Infinity. */
  capacity?: number;
  /** Whether a candidate may take calls at all (the controller: healthy and not suspect). Default: all. */
  usable?: (r: R) => boolean;
  /** Numbers in [0, 1) for "random"; default Math.random (a seeded generator for repeatable picks). */
  random?: () => number;
}

export interface Router<R extends Routable = Routable> {
  /** The strategy, or "custom" for a function. */
  readonly name: RouterName | "custom";
  /** True for user functions, the only routers that read method/args/metadata. */
  readonly readsCall: boolean;
  /** A usable candidate with room, or undefined when there is none. */
  pick(candidates: readonly R[], request: RouteRequest): R | undefined;
}

/** The metadata of a call that carries none. */
export const NO_METADATA: Readonly<Record<string, string>> = Object.freeze({});
const NO_ARGS: readonly unknown[] = Object.freeze([]);
/** For built-in routers, which read only `session`: pass these instead of building a request per call. */
export const ANY_CALL: RouteRequest = Object.freeze({ method: "", args: NO_ARGS, metadata: NO_METADATA, session: false });
export const SESSION_CALL: RouteRequest = Object.freeze({ method: "", args: NO_ARGS, metadata: NO_METADATA, session: true });

const EXPECTED = `one of ${ROUTERS.map((r) => `"${r}"`).join(", ")}, or a function (candidates, call) => candidate | undefined`;

/** The options kit's checker of `router`: a known name (with a "did you mean" for typos) or a function. */
export const checkRouter: Check<RouterSpec> = (v, key, where) => {
  if (typeof v === "function" || (ROUTERS as readonly unknown[]).includes(v)) return v as RouterSpec;
  const guess = typeof v === "string" ? suggest(v, ROUTERS) : undefined;
  throw fail(where, key, EXPECTED, v, guess ? `did you mean "${guess}"?` : undefined, { valid: [...ROUTERS] });
};

const always = () => true;

/** A router for `spec`. Each call makes a fresh one with its own state (cursor, tie rotation). */
export function createRouter<R extends Routable>(spec: RouterSpec, config: RouterConfig<R> = {}): Router<R> {
  const checked = checkRouter(spec, "router", "createRouter");
  const capacity = config.capacity ?? Infinity;
  if (typeof capacity !== "number" || !(capacity >= 1)) {
    throw new InvalidOptionsError(`createRouter: capacity must be a number >= 1 (got ${String(capacity)})`, { details: { option: "capacity" } });
  }
  const usable = config.usable ?? always;
  if (typeof checked === "function") return new FunctionRouter(checked, capacity, usable);
  switch (checked) {
    case "least-loaded":
      return new LeastLoaded(capacity, usable);
    case "round-robin":
      return new RoundRobin(capacity, usable);
    case "random":
      return new RandomRouter(capacity, usable, config.random ?? Math.random);
  }
}

/** Fewest outstanding calls; ties go to the first found from a start that rotates each pick. */
class LeastLoaded<R extends Routable> implements Router<R> {
  readonly name = "least-loaded";
  readonly readsCall = false;
  private next = 0;

  constructor(
    private readonly capacity: number,
    private readonly usable: (r: R) => boolean,
  ) {}

  pick(candidates: readonly R[], request: RouteRequest): R | undefined {
    const n = candidates.length;
    if (n === 0) return undefined;
    const start = this.next % n;
    this.next = start + 1 === n ? 0 : start + 1;
    const bySessions = request.session === true;
    let best: R | undefined;
    for (let i = 0, j = start; i < n; i++, j = j + 1 === n ? 0 : j + 1) {
      const r = candidates[j]!;
      if (r.outstanding >= this.capacity || !this.usable(r)) continue;
      if (best === undefined || r.outstanding < best.outstanding || (bySessions && r.outstanding === best.outstanding && r.sessions < best.sessions)) best = r;
    }
    return best;
  }
}

/** The next candidate with room after the previous pick, in array order. */
class RoundRobin<R extends Routable> implements Router<R> {
  readonly name = "round-robin";
  readonly readsCall = false;
  private next = 0;

  constructor(
    private readonly capacity: number,
    private readonly usable: (r: R) => boolean,
  ) {}

  pick(candidates: readonly R[]): R | undefined {
    const n = candidates.length;
    for (let i = 0, j = n === 0 ? 0 : this.next % n; i < n; i++, j = j + 1 === n ? 0 : j + 1) {
      const r = candidates[j]!;
      if (r.outstanding >= this.capacity || !this.usable(r)) continue;
      this.next = j + 1 === n ? 0 : j + 1;
      return r;
    }
    return undefined;
  }
}

/** Uniform among the candidates with room: one pass counts them, a second finds the drawn one. */
class RandomRouter<R extends Routable> implements Router<R> {
  readonly name = "random";
  readonly readsCall = false;

  constructor(
    private readonly capacity: number,
    private readonly usable: (r: R) => boolean,
    private readonly random: () => number,
  ) {}

  pick(candidates: readonly R[]): R | undefined {
    let k = 0;
    for (const r of candidates) if (r.outstanding < this.capacity && this.usable(r)) k++;
    if (k === 0) return undefined;
    let left = Math.min(k - 1, Math.max(0, Math.floor(this.random() * k)));
    for (const r of candidates) {
      if (r.outstanding < this.capacity && this.usable(r) && left-- === 0) return r;
    }
    return undefined; // unreachable unless usable() changed its mind between the passes
  }
}

/**
 * A user function. It gets fresh frozen views (so it cannot change the controller's records or
 * keep a view that later changes under it); the allocation is per call, unlike the built-ins.
 */
class FunctionRouter<R extends Routable> implements Router<R> {
  readonly name = "custom";
  readonly readsCall = true;
  private readonly fallback: LeastLoaded<R>;
  /** The candidates behind the views of the current pick (scratch, never handed out). */
  private offered: R[] = [];

  constructor(
    private readonly fn: RouterFunction,
    private readonly capacity: number,
    private readonly usable: (r: R) => boolean,
  ) {
    this.fallback = new LeastLoaded(capacity, usable);
  }

  pick(candidates: readonly R[], request: RouteRequest): R | undefined {
    const offered = this.offered;
    offered.length = 0;
    const views: ReplicaView[] = [];
    for (const r of candidates) {
      if (r.outstanding >= this.capacity || !this.usable(r)) continue;
      offered.push(r);
      views.push(Object.freeze({ index: r.index, outstanding: r.outstanding, capacity: this.capacity, room: this.capacity - r.outstanding, sessions: r.sessions }));
    }
    if (views.length === 0) return undefined;
    Object.freeze(views);
    let choice: unknown;
    try {
      choice = this.fn(views, request);
    } catch (err) {
      offered.length = 0;
      throw new RouterError(
        `the router function threw while routing ${request.method || "a call"} (${(err as Error)?.name ?? "Error"}: ${(err as Error)?.message ?? String(err)}); fix the router, or return undefined to let least-loaded choose`,
        { cause: err, details: { method: request.method } },
      );
    }
    if (choice === undefined || choice === null) {
      offered.length = 0;
      return this.fallback.pick(candidates, request);
    }
    const at = views.indexOf(choice as ReplicaView);
    const r = at < 0 ? undefined : offered[at];
    offered.length = 0;
    if (r !== undefined) return r;
    if (typeof (choice as { then?: unknown } | null)?.then === "function") {
      (choice as Promise<unknown>).then(undefined, () => {}); // never an unhandled rejection from it
      throw new RouterError("the router function returned a Promise; routers run on every call's path and must be synchronous: pick from the candidates and return one", {
        details: { method: request.method },
      });
    }
    throw new RouterError(
      `the router function returned ${describe(choice)}, which is not one of the candidates it was given for this call; return an element of the candidates array (e.g. candidates.find((c) => c.index === i)), or undefined to let least-loaded choose`,
      { details: { method: request.method } },
    );
  }
}

function describe(v: unknown): string {
  if (v !== null && typeof v === "object" && typeof (v as { index?: unknown }).index === "number") return `an object with index ${(v as { index: number }).index} (a copy, or a view from another call?)`;
  if (typeof v === "number") return `the number ${v} (return the view, e.g. candidates[i], not its position)`;
  return `a ${typeof v}`;
}
