/**
 * Rolling updates (`svc.loadWeights.rolling(weights, 7)`): a method called on every healthy
 * replica in turn, at most `maxUnavailable` at a time, each taken out of routing until its call
 * returns, so that calls keep succeeding on the others and none reaches a replica mid-update.
 *
 * For each replica: mark it updating (the router skips it from then on), let the calls it already
 * has finish, send the method (the arguments are encoded once for all replicas), and put it back
 * once the call returns; its version, reported before the reply (versions.ts), is current by then.
 *
 * Failure: the roll stops at the first replica whose call fails (the method threw, the replica
 * died, the deadline passed, the signal fired). Replicas already being updated finish; no other
 * starts; the failed replica goes back into routing with whatever version it reports (a method
 * should bump `version` only once its update is complete, so `minVersion` callers never reach a
 * half-updated replica). The roll rejects with RollingUpdateError naming the replicas updated,
 * the one that failed and those not updated. Replicas not healthy when their turn comes (dead,
 * restarting) are skipped, as fanout skips them; a replica that restarts comes back with what
 * its constructor gives, so use minVersion to keep calls away from it until the next roll.
 *
 * One roll at a time per service: a second waits for the first (within its own deadline). The
 * whole roll is one call with one deadline (`withOptions(svc.m.rolling, { timeoutMs })`): every
 * replica's call gets what is left of it.
 */
import type { HostedCall } from "../actor/index.ts";
import { type ResolvedCallOptions, type ResolvedRollingOptions } from "../call/index.ts";
import { abortError } from "../connection/index.ts";
import { CallTimeoutError, InvalidOptionsError } from "../errors/index.ts";
import { combineOkReplies } from "../reply/index.ts";
import { closedError, notifyChange, type ControllerState } from "./controller-state.ts";
import { RollingUpdateError } from "./errors.ts";
import type { ResolvedServiceOptions } from "./options.ts";
import { errText, type Replica } from "./replica-state.ts";
import type { PreparedCall } from "./routed-calls.ts";

/** A roll in progress, as `svc.status()` reports it. */
export interface RollingReport {
  method: string;
  startedAt: string;
  maxUnavailable: number;
  /** Replica indexes, by where they are in the roll. */
  updated: number[];
  updating: number[];
  pending: number[];
}

export interface RollingUpdates {
  roll(method: string, args: unknown[], call: ResolvedCallOptions | undefined, options: ResolvedRollingOptions): Promise<unknown[]>;
  /**
   * A roll asked for by a registry handle (header Ab-Rolling), relayed by the service's registry
   * face: the argument bytes go to each replica as they came, and the reply is the replicas'
   * result bytes put together as the encoded array of results, never decoded here.
   */
  rollRelayed(job: HostedCall, payload: Uint8Array, options: ResolvedRollingOptions): Promise<Uint8Array>;
  /** The roll in progress, or null. */
  current(): RollingReport | null;
}

export interface RollingParams {
  state: ControllerState;
  options: ResolvedServiceOptions;
  prepare(method: string, args: unknown[], call: ResolvedCallOptions | undefined, rolling: ResolvedRollingOptions): PreparedCall;
  prepareRelayed(job: HostedCall, payload: Uint8Array): PreparedCall;
  recordMethod(method: string, t0: number, err?: unknown): void;
}

/** Resolves at the next turn of the event loop, after every promise chain now pending has run. */
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

export function createRollingUpdates(p: RollingParams): RollingUpdates {
  const { state: s, options: o } = p;
  const { name, replicas } = s;
  let tail: Promise<void> = Promise.resolve();
  let progress: RollingReport | null = null;

  /** Resolves once `until()` holds (checked on every replica change and when `r` becomes idle), or rejects at the deadline or abort. */
  const waitFor = (until: () => boolean, what: string, call: PreparedCall, r?: Replica) =>
    new Promise<void>((resolve, reject) => {
      if (until()) return resolve();
      const left = call.deadline - Date.now();
      const done = (err?: Error) => {
        clearTimeout(timer);
        s.changeWaiters.delete(check);
        if (r && r.onIdle === check) r.onIdle = undefined;
        call.signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve();
      };
      const check = () => {
        if (s.state !== "running") done(closedError(s));
        else if (until()) done();
      };
      const onAbort = () => done(abortError(call.signal!, `${name}.${call.method}.rolling`));
      const timer = setTimeout(() => done(new CallTimeoutError(`the rolling update of ${name}.${call.method} passed its deadline ${what}`, { details: { service: name, method: call.method } })), Math.max(0, left));
      s.changeWaiters.add(check);
      if (r) r.onIdle = check;
      if (call.signal?.aborted) return onAbort();
      call.signal?.addEventListener("abort", onAbort, { once: true });
    });

  const checkRoutable = () => {
    if (s.state !== "running") throw closedError(s);
    if (o.routing === "queue-group") {
      throw new InvalidOptionsError(`rolling updates take replicas out of routing, which the controller does: service "${name}" uses routing "queue-group", where NATS picks; use the default routing`, {
        details: { service: name },
      });
    }
  };

  const run = async (call: PreparedCall, ro: ResolvedRollingOptions): Promise<unknown[]> => {
    const { method } = call;
    const t0 = performance.now();
    const updated: number[] = [];
    let failed: { replica: number; error: unknown } | undefined;
    let targets: Replica[] = [];
    let next = 0;

    const stopped = (err: unknown, at: number | undefined) => {
      const notUpdated = targets.map((r) => r.index).filter((i) => !updated.includes(i));
      const where = at === undefined ? "before it started" : `at replica ${at}`;
      return new RollingUpdateError(
        `the rolling update of ${name}.${method} stopped ${where} (${errText(err)}); updated: ${updated.length ? [...updated].sort((a, b) => a - b).join(", ") : "none"}; not updated: ${notUpdated.join(", ") || "none"}`,
        { cause: err, details: { service: name, method, updated: [...updated].sort((a, b) => a - b), failed: at ?? null, notUpdated } },
      );
    };

    // One roll at a time: the next starts when this one has put every replica back.
    const previous = tail;
    let report: RollingReport | undefined;
    let release!: () => void;
    tail = new Promise<void>((r) => (release = r));
    try {
      let prevDone = false;
      void previous.then(() => {
        prevDone = true;
        notifyChange(s);
      });
      try {
        await waitFor(() => prevDone, "waiting for the rolling update before it", call);
        await waitFor(() => replicas.some((r) => r.state === "healthy"), "waiting for a healthy replica", call);
      } catch (err) {
        throw stopped(err, undefined);
      }
      targets = replicas.filter((r) => r.state === "healthy");
      const generations = targets.map((r) => r.generation);
      const results = new Map<Replica, unknown>();
      const mine: RollingReport = { method, startedAt: new Date().toISOString(), maxUnavailable: ro.maxUnavailable, updated, updating: [], pending: targets.map((r) => r.index) };
      progress = report = mine;

      const updateOne = async (r: Replica, generation: number) => {
        const alive = () => r.generation === generation && r.state === "healthy";
        mine.pending = mine.pending.filter((i) => i !== r.index);
        if (!alive()) return; // died or restarting since the roll began: skipped, as fanout skips it
        r.updating = true;
        mine.updating.push(r.index);
        notifyChange(s); // out of the route table that registry handles follow
        try {
          // A call that picked this replica just before may still be on its way to sendTo (a few
          // promise hops, never a wait for I/O): after this turn of the event loop it is counted
          // in `outstanding`, and nothing picks the replica any more.
          await nextTurn();
          await waitFor(() => r.outstanding === 0 || !alive(), `waiting for replica ${r.index}'s calls to finish`, call, r);
          if (!alive()) return;
          results.set(r, await call.send(r));
          updated.push(r.index);
        } catch (err) {
          failed ??= { replica: r.index, error: err };
        } finally {
          r.updating = false;
          mine.updating = mine.updating.filter((i) => i !== r.index);
          notifyChange(s);
        }
      };

      const lane = async () => {
        while (!failed && next < targets.length) {
          const i = next++;
          await updateOne(targets[i]!, generations[i]!);
        }
      };
      await Promise.all(Array.from({ length: Math.min(ro.maxUnavailable, targets.length) }, lane));
      if (failed) throw stopped(failed.error, failed.replica);
      p.recordMethod(method, t0);
      return targets.filter((r) => results.has(r)).map((r) => results.get(r));
    } catch (err) {
      p.recordMethod(method, t0, err);
      throw err;
    } finally {
      if (progress === report) progress = null;
      release();
    }
  };

  return {
    async roll(method, args, callOptions, ro) {
      checkRoutable();
      return run(p.prepare(method, args, callOptions, ro), ro);
    },
    async rollRelayed(job, payload, ro) {
      checkRoutable();
      return combineOkReplies((await run(p.prepareRelayed(job, payload), ro)) as Uint8Array[]);
    },
    current: () => (progress ? { ...progress, updated: [...progress.updated], updating: [...progress.updating], pending: [...progress.pending] } : null),
  };
}
