/**
 * Registry handles of a replicated service route their calls straight to its replicas, as the
 * service proxy does in the controller's process (Ray Serve's handles route the same way). The
 * controller publishes a route table (which replicas are alive, which take calls, their versions)
 * and each handle picks a replica with the service's router over its own count of calls in
 * flight. Without a table (an older controller, a function router, multi-process replicas, the
 * table not yet in) calls go to the service's registry face as before, which routes them.
 *
 * A call sent straight to a replica keeps what the controller's routing gives it:
 * - its replica dies (the next table lists its incarnation no more): the call fails with
 *   ReplicaCrashedError, or is sent again while the service's maxTaskRetries allow and the
 *   deadline has not passed, never after;
 * - nobody listens on the replica's subject (the call never ran): sent again elsewhere, or to
 *   the registry face, within the same deadline;
 * - a rolling update takes the replica out of the table, and the replica itself runs the update
 *   call alone (after the calls it holds, before the ones that arrive meanwhile), so a call that
 *   raced the table never sees a replica mid-update;
 * - minVersion: only replicas at or above it; none in the table: the registry face waits.
 */
import { requestCall, type OutgoingCall } from "../actor/index.ts";
import type { Codec } from "../codec/index.ts";
import type { BusConnection, Subscription } from "../connection/index.ts";
import { ReplicaCrashedError, ServiceUnavailableError } from "../errors/index.ts";
import { ANY_CALL, createRouter, ROUTERS, type Router, type RouterName } from "../service/router.ts";
import type { Subjects } from "../subjects/index.ts";

/** One replica as the table lists it: [index, generation, subject, routable (0|1), version or null]. */
export type RouteEntry = [index: number, generation: number, subject: string, routable: 0 | 1, version: number | null];

/** What a controller publishes on subjects.routes(service) and answers on subjects.routesRequest(service). */
export interface RouteTable {
  v: 1;
  /** The controller's id: a new controller's epochs start again. */
  controller: string;
  /** Grows with every change; a handle ignores a table older than the one it has. */
  epoch: number;
  /** False: handles send every call to the registry face (the controller routes). */
  direct: boolean;
  router: RouterName;
  /** maxConcurrency + maxPending of each replica. */
  capacity: number;
  /** The service's maxTaskRetries: attempts after a crash. */
  retries: number;
  /** The replicas alive now (state healthy); routable 0 while suspect, ejected or mid-update. */
  replicas: RouteEntry[];
  /** How often the controller publishes the table even without a change, in ms. */
  refreshMs: number;
}

export function encodeRouteTable(codec: Codec, t: RouteTable): Uint8Array {
  return codec.encode(t);
}

/** The table in `bytes`, or undefined for anything else (a stray or newer-format message). */
export function decodeRouteTable(codec: Codec, bytes: Uint8Array): RouteTable | undefined {
  let t: unknown;
  try {
    t = codec.decode(bytes);
  } catch {
    return undefined;
  }
  const r = t as Partial<RouteTable> | null;
  if (!r || typeof r !== "object" || r.v !== 1 || typeof r.controller !== "string" || typeof r.epoch !== "number" || !Array.isArray(r.replicas)) return undefined;
  if (!(ROUTERS as readonly unknown[]).includes(r.router) || typeof r.capacity !== "number" || typeof r.retries !== "number" || typeof r.refreshMs !== "number") return undefined;
  for (const e of r.replicas) {
    if (!Array.isArray(e) || typeof e[0] !== "number" || typeof e[1] !== "number" || typeof e[2] !== "string" || (e[4] !== null && typeof e[4] !== "number")) return undefined;
  }
  return r as RouteTable;
}

/** One replica incarnation a handle may send to, with the calls this process has on it. */
class RouteTarget {
  outstanding = 0;
  /** Sticky sessions are the proxy's alone: always 0 here (the router reads it). */
  readonly sessions = 0;
  readonly calls = new Set<DirectCall>();
  /** Found nobody on its subject: skipped until a table lists it again. */
  unreachable = false;
  constructor(
    readonly index: number,
    readonly generation: number,
    readonly subject: string,
    public routable: boolean,
    public version: number | null,
  ) {}
}

export interface DirectRoutes {
  /**
   * Sends a call straight to a replica when the table allows, and resolves to the reply's bytes;
   * undefined when there is no replica to pick (the caller sends it to the registry face).
   */
  send(payload: Uint8Array, call: OutgoingCall, fallbackSubject: string): Promise<Uint8Array> | undefined;
  close(): void;
}

export interface DirectRoutesParams {
  conn: BusConnection;
  subjects: Subjects;
  service: string;
}

export function createDirectRoutes(p: DirectRoutesParams): DirectRoutes {
  const { conn, subjects, service } = p;
  const { codec, transport } = conn;
  let table: RouteTable | undefined;
  let targets: RouteTarget[] = [];
  let router: Router<RouteTarget> | undefined;
  let routerKey = "";
  let stale: ReturnType<typeof setTimeout> | undefined;
  let closed = false;

  const routable = (t: RouteTarget) => t.routable && !t.unreachable;

  const apply = (next: RouteTable) => {
    if (closed) return;
    if (table && table.controller === next.controller && next.epoch < table.epoch) return;
    const byKey = new Map(targets.map((t) => [`${t.index}.${t.generation}`, t]));
    const kept: RouteTarget[] = [];
    for (const [index, generation, subject, r, version] of next.replicas) {
      const old = byKey.get(`${index}.${generation}`);
      byKey.delete(`${index}.${generation}`);
      if (old && old.subject === subject) {
        old.routable = r === 1;
        old.version = version;
        // A newer table lists it: reachable again (a reconnect, or a table newer than the miss).
        if (next.epoch !== table?.epoch || next.controller !== table.controller) old.unreachable = false;
        kept.push(old);
      } else {
        kept.push(new RouteTarget(index, generation, subject, r === 1, version));
      }
    }
    table = next;
    targets = kept;
    const key = `${next.router}/${next.capacity}`;
    if (key !== routerKey) {
      routerKey = key;
      router = createRouter<RouteTarget>(next.router, { capacity: next.capacity, usable: routable });
    }
    // Incarnations no longer alive: their calls will get no answer.
    for (const gone of byKey.values()) for (const c of [...gone.calls]) c.crashed(gone);
    // A controller that stops publishing (its process died) leaves routing to the registry face.
    clearTimeout(stale);
    stale = setTimeout(() => forget(), Math.max(1_000, next.refreshMs * 3));
    stale.unref?.();
  };

  const forget = () => {
    table = undefined;
    targets = [];
    // Their calls stay in flight: without a table nobody can say whether the replicas live.
  };

  const onTable = (bytes: Uint8Array) => {
    const t = decodeRouteTable(codec, bytes);
    if (t) apply(t);
  };

  const sub: Subscription = transport.subscribe(subjects.routes(service), (msg) => onTable(msg.data));
  // The current table now rather than at the next refresh; no controller (yet): the publishes bring it.
  transport.request(subjects.routesRequest(service), new Uint8Array(0), 2_000).then(onTable, () => {});

  const pick = (minVersion: number | undefined): RouteTarget | undefined => {
    if (!table?.direct || !router) return undefined;
    if (minVersion === undefined) return router.pick(targets, ANY_CALL);
    return router.pick(
      targets.filter((t) => t.version !== null && t.version >= minVersion),
      ANY_CALL,
    );
  };

  class DirectCallImpl implements DirectCall {
    private done = false;
    private target: RouteTarget | undefined;
    private retries: number;
    constructor(
      private readonly payload: Uint8Array,
      private readonly call: OutgoingCall,
      private readonly fallbackSubject: string,
      private readonly resolve: (b: Uint8Array) => void,
      private readonly reject: (e: unknown) => void,
    ) {
      this.retries = table?.retries ?? 0;
    }

    start(t: RouteTarget | undefined): void {
      if (!t) {
        // Nothing to pick: the registry face routes (and waits for a replica within the deadline).
        requestCall(transport, subjects, this.fallbackSubject, this.payload, this.call).then(this.resolve, this.reject);
        return;
      }
      this.target = t;
      t.outstanding++;
      t.calls.add(this);
      requestCall(transport, subjects, t.subject, this.payload, this.call).then(
        (b) => this.settled(t) && this.resolve(b),
        (err) => this.failed(t, err),
      );
    }

    /** Whether the answer from `t` is still this call's (not after a crash moved it on). */
    private settled(t: RouteTarget): boolean {
      if (this.target !== t || this.done) return false;
      this.release(t);
      this.done = true;
      return true;
    }

    private release(t: RouteTarget) {
      t.outstanding--;
      t.calls.delete(this);
      this.target = undefined;
    }

    private failed(t: RouteTarget, err: unknown): void {
      if (this.target !== t || this.done) return;
      if (err instanceof ServiceUnavailableError && Date.now() < this.call.deadline && !this.call.signal?.aborted) {
        // Nobody on the replica's subject: the call never ran, so it may go elsewhere.
        this.release(t);
        t.unreachable = true;
        this.start(pick(this.call.minVersion));
        return;
      }
      this.release(t);
      this.done = true;
      this.reject(err);
    }

    crashed(t: RouteTarget): void {
      if (this.target !== t || this.done) return;
      this.release(t);
      if (this.retries > 0 && Date.now() < this.call.deadline && !this.call.signal?.aborted) {
        this.retries--;
        this.start(pick(this.call.minVersion));
        return;
      }
      this.done = true;
      this.reject(
        new ReplicaCrashedError(`replica ${t.index} of "${service}" died while it held the call to ${this.call.method}`, {
          details: { service, replica: t.index, method: this.call.method },
        }),
      );
    }
  }

  return {
    send(payload, call, fallbackSubject) {
      const t = pick(call.minVersion);
      if (!t) return undefined;
      return new Promise<Uint8Array>((resolve, reject) => new DirectCallImpl(payload, call, fallbackSubject, resolve, reject).start(t));
    },
    close() {
      if (closed) return;
      closed = true;
      clearTimeout(stale);
      sub.unsubscribe();
      forget();
    },
  };
}

interface DirectCall {
  crashed(t: RouteTarget): void;
}
