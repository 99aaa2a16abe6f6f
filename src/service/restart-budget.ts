/**
 * When a replica that died is started again: Ray's `max_restarts` (a count, -1 for no limit)
 * made a budget over a sliding window, so that a replica crashing once a day is restarted every
 * time while one crashing in a loop is given up on. A pure module: no timers, no clocks (times
 * are passed in), no NATS; the replica supervisor acts on its decisions.
 *
 * - A restart is counted when it is attempted on a host (whether the new process then serves
 *   or crashes while starting). An attempt that found no host for the replica (PlacementError:
 *   no capacity, its agent gone) is not a crash of the replica and costs nothing: the replica
 *   waits, failed, until capacity appears (capacity-watch.ts).
 * - At most `maxRestarts` restarts within any `restartWindowMs`; the next crash within the window
 *   is a crash loop and the replica is marked failed. -1: no limit; 0: never restarted.
 * - A replica that stayed healthy for `stableMs` before dying starts with a clean budget.
 * - The delay before a restart doubles with each restart in the window, from `restartBackoffMs`
 *   up to `maxBackoffMs`.
 */
import { PlacementError } from "../errors/index.ts";

export interface RestartPolicy {
  /** Restarts allowed within restartWindowMs; -1: no limit. */
  maxRestarts: number;
  restartWindowMs: number;
  restartBackoffMs: number;
  maxBackoffMs: number;
  stableMs: number;
}

/** The restarts one replica was given, oldest first (epoch ms). */
export interface RestartHistory {
  times: number[];
}

export type RestartDecision = { kind: "restart"; delayMs: number } | { kind: "give-up"; reason: string };

export function createHistory(): RestartHistory {
  return { times: [] };
}

/** Restarts within the window that ends at `now` (older ones are dropped from the history). */
export function recentRestarts(p: RestartPolicy, h: RestartHistory, now: number): number {
  const from = now - p.restartWindowMs;
  let drop = 0;
  while (drop < h.times.length && h.times[drop]! <= from) drop++;
  if (drop > 0) h.times.splice(0, drop);
  return h.times.length;
}

/** The replica died after being healthy for `healthyForMs`: long enough, and its budget is whole again. */
export function noteDeath(p: RestartPolicy, h: RestartHistory, healthyForMs: number): void {
  if (healthyForMs >= p.stableMs) h.times.length = 0;
}

/** Whether (and after how long) to restart a replica that died or failed to start. */
export function decideRestart(p: RestartPolicy, h: RestartHistory, now: number): RestartDecision {
  const n = recentRestarts(p, h, now);
  if (p.maxRestarts === 0) return { kind: "give-up", reason: "restarts are off (maxRestarts 0)" };
  if (p.maxRestarts > 0 && n >= p.maxRestarts) {
    return { kind: "give-up", reason: `crash loop: ${n} restart${n === 1 ? "" : "s"} within ${seconds(p.restartWindowMs)} (maxRestarts ${p.maxRestarts}, restartWindowMs ${p.restartWindowMs})` };
  }
  return { kind: "restart", delayMs: Math.min(p.maxBackoffMs, p.restartBackoffMs * 2 ** Math.min(n, 30)) };
}

/** A restart was attempted on a host at `now`. */
export function recordRestart(h: RestartHistory, now: number): void {
  h.times.push(now);
}

/**
 * Whether a failed (re)start found no place to run rather than crashing: no host with room, or
 * the chosen host's agent gone. Such a replica waits for capacity instead of spending restarts.
 */
export function isPlacementFailure(err: unknown): boolean {
  return err instanceof PlacementError;
}

const seconds = (ms: number) => (ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`);
