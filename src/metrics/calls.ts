import { ActorBusError, errorClassFor } from "../errors/index.ts";
import type { Push } from "./family.ts";

/** Upper bounds of the call duration histograms, seconds (sub-millisecond calls up to long jobs). */
export const DURATION_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The method label of calls to names outside the declared set (or past the cap). */
export const OTHER = "other";
/** Distinct method labels per service when the caller does not know the declared methods. */
export const MAX_METHODS = 64;

/** The code label of an outcome: what the caller sees, within the library's own set of codes. */
export function codeOf(err: unknown): string {
  if (!(err instanceof ActorBusError)) return "REMOTE";
  // A subclass of the application's with a code of its own would add a series per code.
  return errorClassFor(err.code) ? err.code : "OTHER";
}

/**
 * What a call site holds for one method: bound once (per host, per handle method), so a call
 * costs a clock read, a few additions and a bucket scan, and allocates nothing.
 */
export interface MethodRecorder {
  /** false for the null recorder: call sites skip the clock and the bookkeeping. */
  readonly on: boolean;
  /** A call that began at performance.now() `t0` ended with `code` ("OK" or the error's code). */
  done(t0: number, code: string): void;
  /** A call answered without running (refused, expired in the queue, cancelled while queued). */
  count(code: string): void;
}

/** The calls of one service as one side (host or client) of this process sees them. */
export interface CallRecorder {
  readonly on: boolean;
  method(name: string): MethodRecorder;
  /** A call refused because the mailbox was full (it is also counted under OVERLOADED). */
  overloaded(): void;
}

const NOOP_METHOD: MethodRecorder = { on: false, done() {}, count() {} };
export const NO_CALLS: CallRecorder = { on: false, method: () => NOOP_METHOD, overloaded() {} };

class MethodSeries implements MethodRecorder {
  readonly on = true;
  ok = 0;
  /** Error codes are a bounded set (codeOf), and Map.set on a present key allocates nothing. */
  readonly codes = new Map<string, number>();
  readonly buckets = new Float64Array(DURATION_BUCKETS.length);
  sum = 0;
  n = 0;

  constructor(readonly method: string) {}

  done(t0: number, code: string): void {
    const s = (performance.now() - t0) / 1000;
    this.sum += s;
    this.n++;
    let i = 0;
    while (i < DURATION_BUCKETS.length && s > DURATION_BUCKETS[i]!) i++;
    if (i < DURATION_BUCKETS.length) this.buckets[i]!++;
    this.count(code);
  }

  count(code: string): void {
    if (code === "OK") this.ok++;
    else this.codes.set(code, (this.codes.get(code) ?? 0) + 1);
  }
}

/**
 * The series of one (namespace, service) on one side. Shared by every host (or handle) of that
 * service in the process, so the label sets stay one per service, method and code.
 */
export class ServiceCalls implements CallRecorder {
  readonly on = true;
  overloads = 0;
  private readonly methods = new Map<string, MethodSeries>();
  private declared: Set<string> | undefined;

  constructor(
    readonly namespace: string,
    readonly service: string,
    declared: Iterable<string> | undefined,
  ) {
    this.declared = declared ? new Set(declared) : undefined;
  }

  method(name: string): MethodRecorder {
    let m = this.methods.get(name);
    if (m) return m;
    const allowed = this.declared ? this.declared.has(name) : this.methods.size < MAX_METHODS;
    const label = allowed ? name : OTHER;
    m = this.methods.get(label);
    if (!m) this.methods.set(label, (m = new MethodSeries(label)));
    // Unknown names are not cached under their own key: a caller probing random names must not grow the map.
    if (allowed) this.methods.set(name, m);
    return m;
  }

  /**
   * Declared methods learnt later (a handle made before the registry record was read, another
   * host with a newer class). Names labelled already keep their series.
   */
  declare(names: Iterable<string>): void {
    if (!this.declared) this.declared = new Set(this.methods.keys());
    for (const n of names) this.declared.add(n);
  }

  overloaded(): void {
    this.overloads++;
  }

  readCalls(push: Push): void {
    const base = { namespace: this.namespace, service: this.service };
    for (const m of this.methods.values()) {
      if (m.ok) push({ ...base, method: m.method, code: "OK" }, m.ok);
      for (const [code, n] of m.codes) push({ ...base, method: m.method, code }, n);
    }
  }

  readDurations(push: Push, name: string): void {
    for (const m of this.methods.values()) {
      if (m.n === 0) continue;
      const labels = { namespace: this.namespace, service: this.service, method: m.method };
      let acc = 0;
      for (let i = 0; i < DURATION_BUCKETS.length; i++) {
        acc += m.buckets[i]!;
        push({ ...labels, le: DURATION_BUCKETS[i]! }, acc, `${name}_bucket`);
      }
      push({ ...labels, le: "+Inf" }, m.n, `${name}_bucket`);
      push(labels, m.sum, `${name}_sum`);
      push(labels, m.n, `${name}_count`);
    }
  }
}
