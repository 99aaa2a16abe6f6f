import { InvalidOptionsError } from "../errors/index.ts";

/** How one hosted actor takes calls. Resource hints are recorded for placement (services). */
export interface ActorOptions {
  /** Calls run at once; 1 (default) is an actor mailbox: one call at a time, in order. */
  maxConcurrency?: number;
  /** Calls that may wait beyond maxConcurrency; more get a retryable OverloadedError. */
  maxPending?: number;
  /** Default deadline of calls made through handles to this service. */
  timeoutMs?: number;
  /** How long close() lets running and queued calls finish before failing them. */
  drainTimeoutMs?: number;
  /** Resource hints (Ray's num_cpus/num_gpus); recorded in the registry. */
  numCpus?: number;
  numGpus?: number;
  /** Free-form labels shown by `actorbus ls`. */
  metadata?: Record<string, string>;
}

export type ResolvedActorOptions = Required<Omit<ActorOptions, "metadata">> & { metadata: Record<string, string> };

export const ACTOR_DEFAULTS: ResolvedActorOptions = Object.freeze({
  maxConcurrency: 1,
  maxPending: 1024,
  timeoutMs: 30_000,
  drainTimeoutMs: 10_000,
  numCpus: 0,
  numGpus: 0,
  metadata: {},
});

const KNOWN = new Set(Object.keys(ACTOR_DEFAULTS));

export function checkInt(where: string, key: string, v: unknown, min: number, hint: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    throw new InvalidOptionsError(`${where}: ${key} must be an integer >= ${min} (got ${String(v)}); ${hint}`, { details: { option: key } });
  }
  return v;
}

export function resolveActorOptions(opts: ActorOptions | undefined, where = "actor options"): ResolvedActorOptions {
  const o = opts ?? {};
  if (typeof o !== "object") throw new InvalidOptionsError(`${where} must be an object such as { maxConcurrency: 4 }`);
  for (const k of Object.keys(o)) {
    if (!KNOWN.has(k)) {
      throw new InvalidOptionsError(
        `${where}: unknown option "${k}"; valid options are ${[...KNOWN].join(", ")} (constructor arguments go after the options object)`,
        { details: { option: k } },
      );
    }
  }
  const r = { ...ACTOR_DEFAULTS, ...o, metadata: { ...(o.metadata ?? {}) } } as ResolvedActorOptions;
  checkInt(where, "maxConcurrency", r.maxConcurrency, 1, "use 1 for one call at a time");
  checkInt(where, "maxPending", r.maxPending, 0, "use 0 to reject calls while busy");
  checkInt(where, "timeoutMs", r.timeoutMs, 1, "deadlines are in milliseconds");
  checkInt(where, "drainTimeoutMs", r.drainTimeoutMs, 0, "milliseconds to let in-flight calls finish on close");
  if (typeof r.numCpus !== "number" || r.numCpus < 0) throw new InvalidOptionsError(`${where}: numCpus must be a number >= 0`);
  if (typeof r.numGpus !== "number" || r.numGpus < 0) throw new InvalidOptionsError(`${where}: numGpus must be a number >= 0`);
  return r;
}
