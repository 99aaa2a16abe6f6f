import type { BusConnection } from "../connection/index.ts";
import { pingInstance } from "../registry/index.ts";
import type { Subjects } from "../subjects/index.ts";
import { notifyChange, type ControllerState } from "./controller-state.ts";
import { answered, createTrack, heartbeatAnswered, probeAnswered, probeFailed, stalled, timedOut, type OutlierPeer, type OutlierTrack, type ResolvedOutlierOptions } from "./outliers.ts";
import type { Replica } from "./replica-state.ts";

/** What routed calls tell about each call's outcome on a replica (cheap: it runs per reply). */
export interface CallOutcomes {
  /** The replica answered a call sent at `sentAt` (performance.now() ms). */
  answered(r: Replica, generation: number, sentAt: number): void;
  /** A call sent at `sentAt` got no reply from the replica by its deadline. */
  timedOut(r: Replica, generation: number, sentAt: number): void;
}

/** The controller's outlier ejection: the policy of outliers.ts, with its probes and timers. */
export interface OutlierEjection extends CallOutcomes {
  /** A heartbeat of the replica sent at `sentAt` got no answer in its time. */
  stalled(r: Replica, generation: number, sentAt: number): void;
  /** Every process of the replica answered a heartbeat sent at `sentAt`. */
  heard(r: Replica, generation: number, sentAt: number): void;
  stop(): void;
}

export interface OutlierEjectionParams {
  state: ControllerState;
  conn: BusConnection;
  subjects: Subjects;
  /** false: ejection off (every method is a no-op). */
  options: ResolvedOutlierOptions | false;
}

const NO_OUTCOMES: OutlierEjection = { answered() {}, timedOut() {}, stalled() {}, heard() {}, stop() {} };
/** For routed calls without outlier ejection. */
export const NO_CALL_OUTCOMES: CallOutcomes = NO_OUTCOMES;

/**
 * Keeps one track per replica incarnation (a restart starts a clean one), sets `r.ejected` for
 * the router, and probes ejected replicas by pinging their processes: all answer, it is back.
 * A probe that finds a process gone leaves the replica to the supervisor's heartbeats.
 */
export function createOutlierEjection(p: OutlierEjectionParams): OutlierEjection {
  const o = p.options;
  if (o === false) return NO_OUTCOMES;
  const { state: s, conn, subjects } = p;
  const tracks = new Map<Replica, { generation: number; track: OutlierTrack; timer?: NodeJS.Timeout }>();
  let stopped = false;

  const entry = (r: Replica, generation: number) => {
    let e = tracks.get(r);
    if (!e || e.generation !== generation) {
      if (e?.timer) clearTimeout(e.timer);
      tracks.set(r, (e = { generation, track: createTrack() }));
    }
    return e;
  };
  const peers = (): OutlierPeer[] =>
    s.replicas.map((r) => {
      const e = tracks.get(r);
      const current = e && e.generation === r.generation;
      // Routable apart from ejection: a replica mid-update or suspect cannot stand in for one ejected.
      return { track: current ? e.track : createTrack(), healthy: r.state === "healthy" && !r.suspect && !r.updating };
    });

  const setEjected = (r: Replica, ejected: boolean, why: string) => {
    if (r.ejected === ejected) return;
    r.ejected = ejected;
    r.reason = ejected ? `ejected: ${why}` : "";
    notifyChange(s);
  };

  const scheduleProbe = (r: Replica, e: { generation: number; track: OutlierTrack; timer?: NodeJS.Timeout }) => {
    if (stopped) return;
    if (e.timer) clearTimeout(e.timer);
    e.timer = setTimeout(() => void probe(r, e), Math.max(0, e.track.nextProbeAt - performance.now()));
    e.timer.unref();
  };

  const probe = async (r: Replica, e: { generation: number; track: OutlierTrack; timer?: NodeJS.Timeout }) => {
    e.timer = undefined;
    if (stopped || tracks.get(r) !== e) return;
    if (r.generation !== e.generation || r.state !== "healthy") {
      // Died (the supervisor restarts it, as a new incarnation with a clean track) or stopping.
      tracks.delete(r);
      setEjected(r, false, "");
      return;
    }
    const states = await Promise.all(r.procs.map((x) => pingInstance(conn, subjects, x.procId, o.probeTimeoutMs)));
    if (stopped || tracks.get(r) !== e || r.generation !== e.generation) return;
    if (states.every((st) => st === "alive")) {
      probeAnswered(e.track, performance.now());
      setEjected(r, false, "");
      return;
    }
    probeFailed(o, e.track, performance.now());
    scheduleProbe(r, e);
  };

  const ejectNow = (r: Replica, e: { generation: number; track: OutlierTrack; timer?: NodeJS.Timeout }, why: string) => {
    setEjected(r, true, why);
    scheduleProbe(r, e);
  };

  return {
    answered(r, generation, sentAt) {
      const e = tracks.get(r);
      if (e !== undefined && e.generation === generation) answered(e.track, sentAt);
      else if (!stopped) answered(entry(r, generation).track, sentAt);
    },
    timedOut(r, generation, sentAt) {
      if (stopped || r.generation !== generation || r.state !== "healthy") return;
      const e = entry(r, generation);
      if (timedOut(o, e.track, sentAt, peers(), performance.now())) {
        ejectNow(r, e, `${e.track.consecutive} calls in a row got no reply by their deadlines while other replicas answered`);
      }
    },
    stalled(r, generation, sentAt) {
      if (stopped || r.generation !== generation || r.state !== "healthy") return;
      const e = entry(r, generation);
      if (stalled(o, e.track, sentAt, peers(), performance.now())) ejectNow(r, e, "its heartbeat got no answer in time while other replicas answered calls");
    },
    heard(r, generation, sentAt) {
      if (stopped || r.generation !== generation) return;
      heartbeatAnswered(entry(r, generation).track, sentAt);
    },
    stop() {
      stopped = true;
      for (const e of tracks.values()) if (e.timer) clearTimeout(e.timer);
      tracks.clear();
    },
  };
}
