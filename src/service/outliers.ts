/**
 * Outlier ejection (Envoy's outlier detection, Finagle's failure accrual): a replica whose calls
 * time out while its peers answer, or whose heartbeats stall, leaves routing; it is probed and
 * put back once it answers. A frozen process (SIGSTOP, a stop-the-world pause, a wedged event
 * loop) keeps its NATS connection, so nobody ever hears "no responders" for it: without this,
 * the router keeps feeding it calls that fail at their deadlines.
 *
 * A pure module: no NATS, no timers, no clocks. Callers pass times in (performance.now() ms) and
 * act on the decisions (outlier-ejection.ts wires it into a controller).
 *
 * Rules:
 * - A reply of any kind (a result, the method's own error, a host's OverloadedError) is an
 *   answer: it resets the replica's run of timeouts. Only a call that got no reply by its
 *   deadline counts as a timeout.
 * - `consecutiveTimeouts` timeouts in a row eject a replica, but only while another routable
 *   replica answered a call sent no earlier than the timed-out one ("while others answer"): when
 *   every replica times out, the calls are too slow for their deadlines, and ejecting would only
 *   shrink the service.
 * - A stalled heartbeat (a ping with no answer in its time) ejects at once, under the same
 *   condition: another replica answered a call sent no earlier than the ping. (When this
 *   controller's own connection is down, nobody answers, and nobody is ejected for it.)
 * - Never more than `maxEjectedPercent` of the healthy replicas, and never the last routable one.
 * - The first probe comes `ejectionMs` after the ejection, doubled for each ejection in a row (a
 *   replica put back that times out again, up to `maxEjectionMs`); a probe that gets no answer is
 *   repeated every `ejectionMs`. A replica back in routing for `maxEjectionMs` starts over.
 */
import { bool, defineOptions, durationMs, fail, int, type Check, type SpecFor } from "../options/index.ts";

export interface OutlierEjectionOptions {
  /** Timeouts in a row that eject a replica (while another replica answers). Default 2. */
  consecutiveTimeouts?: number;
  /** Time out of routing before the first probe; doubles per ejection in a row. Default 1000. */
  ejectionMs?: number;
  /** Upper bound of that time. Default 30000. */
  maxEjectionMs?: number;
  /** Share of the healthy replicas that may be out at once (never the last one). Default 50. */
  maxEjectedPercent?: number;
  /** How long a probe (a ping of the replica's processes) waits for its answer. Default 1000. */
  probeTimeoutMs?: number;
}

export type ResolvedOutlierOptions = Required<OutlierEjectionOptions>;

export const OUTLIER_DEFAULTS: ResolvedOutlierOptions = Object.freeze({
  consecutiveTimeouts: 2,
  ejectionMs: 1_000,
  maxEjectionMs: 30_000,
  maxEjectedPercent: 50,
  probeTimeoutMs: 1_000,
});

const outlierOptions = defineOptions(
  "outlierEjection options",
  {
    consecutiveTimeouts: int({ min: 1, hint: "timeouts in a row before a replica leaves routing" }),
    ejectionMs: durationMs({ min: 1, hint: "how long an ejected replica waits for its first probe" }),
    maxEjectionMs: durationMs({ min: 1, hint: "the longest wait before a probe" }),
    maxEjectedPercent: int({ min: 0, max: 100, hint: "0 never ejects; 100 may eject all but one" }),
    probeTimeoutMs: durationMs({ min: 1, hint: "how long a probe waits for the replica's answer" }),
  } satisfies SpecFor<OutlierEjectionOptions>,
  () => ({ ...OUTLIER_DEFAULTS }),
  { example: "{ consecutiveTimeouts: 3 }" },
);

const checkFlag = bool();

/**
 * The options kit's checker of `outlierEjection`: true (the defaults), false (off) or an object
 * of the options above. Resolves to the full options, or false.
 */
export const checkOutlierEjection: Check<ResolvedOutlierOptions | false> = (v, key, where) => {
  if (typeof v === "boolean") return checkFlag(v, key, where) ? { ...OUTLIER_DEFAULTS } : false;
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw fail(where, key, "true, false, or an object such as { consecutiveTimeouts: 3 }", v, "false turns outlier ejection off");
  }
  const r = outlierOptions.parse(v, `${where}: ${key}`);
  if (r.maxEjectionMs < r.ejectionMs) throw fail(where, `${key}.maxEjectionMs`, `a duration >= ejectionMs (${r.ejectionMs})`, r.maxEjectionMs);
  return r;
};

/** What the policy keeps about one replica (one incarnation of it). */
export interface OutlierTrack {
  /** Timeouts since its last answer. */
  consecutive: number;
  /** Send time of the latest call it answered (-Infinity: none yet). */
  lastAnsweredSentAt: number;
  ejected: boolean;
  /** Ejections in a row (reset once it stays back for maxEjectionMs). */
  ejections: number;
  /** When it was last put back in routing. */
  backAt: number;
  /** While ejected: when to probe it next. */
  nextProbeAt: number;
}

export function createTrack(): OutlierTrack {
  return { consecutive: 0, lastAnsweredSentAt: -Infinity, ejected: false, ejections: 0, backAt: -Infinity, nextProbeAt: Infinity };
}

/** One replica as the policy sees it when deciding: its track, and whether it may take calls now. */
export interface OutlierPeer {
  readonly track: OutlierTrack;
  /** Healthy (whether or not ejected): ejection only ever concerns healthy replicas. */
  readonly healthy: boolean;
}

/** A call to `track`'s replica was answered; `sentAt` is when it was sent. */
export function answered(track: OutlierTrack, sentAt: number): void {
  track.consecutive = 0;
  if (sentAt > track.lastAnsweredSentAt) track.lastAnsweredSentAt = sentAt;
}

/**
 * A call sent at `sentAt` got no reply by its deadline. Returns true when the replica must leave
 * routing now (the track is then marked ejected).
 */
/**
 * It answered a heartbeat sent at `sentAt`: evidence that it is there when a peer's heartbeat
 * stalls (calls registry handles send straight to replicas never reach the controller), but not
 * an answered call: its run of timeouts stands.
 */
export function heartbeatAnswered(track: OutlierTrack, sentAt: number): void {
  if (sentAt > track.lastAnsweredSentAt) track.lastAnsweredSentAt = sentAt;
}

export function timedOut(o: ResolvedOutlierOptions, track: OutlierTrack, sentAt: number, peers: readonly OutlierPeer[], now: number): boolean {
  track.consecutive++;
  if (track.ejected || track.consecutive < o.consecutiveTimeouts) return false;
  return othersAnswered(track, sentAt, peers) && eject(o, track, peers, now);
}

/** A heartbeat sent at `sentAt` got no answer in its time. Returns true when the replica must leave routing now. */
export function stalled(o: ResolvedOutlierOptions, track: OutlierTrack, sentAt: number, peers: readonly OutlierPeer[], now: number): boolean {
  return !track.ejected && othersAnswered(track, sentAt, peers) && eject(o, track, peers, now);
}

function othersAnswered(track: OutlierTrack, sentAt: number, peers: readonly OutlierPeer[]): boolean {
  return peers.some((p) => p.track !== track && p.healthy && !p.track.ejected && p.track.lastAnsweredSentAt >= sentAt);
}

/** Whether taking one more replica out keeps within maxEjectedPercent and leaves one routable. */
export function mayEject(o: ResolvedOutlierOptions, track: OutlierTrack, peers: readonly OutlierPeer[]): boolean {
  let healthy = 0;
  let out = 0;
  for (const p of peers) {
    if (!p.healthy) continue;
    healthy++;
    if (p.track.ejected) out++;
  }
  if (!peers.some((p) => p.track === track && p.healthy)) return false;
  return out + 1 <= Math.floor((healthy * o.maxEjectedPercent) / 100) && healthy - out - 1 >= 1;
}

function eject(o: ResolvedOutlierOptions, track: OutlierTrack, peers: readonly OutlierPeer[], now: number): boolean {
  if (!mayEject(o, track, peers)) return false;
  if (now - track.backAt >= o.maxEjectionMs) track.ejections = 0;
  track.ejections++;
  track.ejected = true;
  track.nextProbeAt = now + ejectionTime(o, track.ejections);
  return true;
}

/** How long the `n`th ejection in a row lasts before its first probe. */
export function ejectionTime(o: ResolvedOutlierOptions, n: number): number {
  return Math.min(o.maxEjectionMs, o.ejectionMs * 2 ** Math.max(0, Math.min(30, n - 1)));
}

/** A probe was answered: the replica is back in routing with a clean run. */
export function probeAnswered(track: OutlierTrack, now: number): void {
  track.ejected = false;
  track.consecutive = 0;
  track.backAt = now;
  track.nextProbeAt = Infinity;
}

/** A probe got no answer: probe again after the base ejection time. */
export function probeFailed(o: ResolvedOutlierOptions, track: OutlierTrack, now: number): void {
  track.nextProbeAt = now + o.ejectionMs;
}
