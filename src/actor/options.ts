import { defineOptions, durationMs, int, num, stringRecord, type SpecFor } from "../options/index.ts";

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

const actorOptions = defineOptions(
  "actor options",
  {
    maxConcurrency: int({ min: 1, hint: "use 1 for one call at a time" }),
    maxPending: int({ min: 0, hint: "use 0 to reject calls while busy" }),
    timeoutMs: durationMs({ min: 1, hint: "the default deadline of calls through handles" }),
    drainTimeoutMs: durationMs({ min: 0, hint: "milliseconds to let in-flight calls finish on close" }),
    numCpus: num({ min: 0, hint: "a resource hint for placement" }),
    numGpus: num({ min: 0, hint: "a resource hint for placement" }),
    metadata: stringRecord('labels such as { team: "rl" }'),
  } satisfies SpecFor<ActorOptions>,
  // metadata is copied by its checker, so the frozen default object is never handed out.
  () => ({ ...ACTOR_DEFAULTS }),
  { example: "{ maxConcurrency: 4 }", unknownHint: "constructor arguments go after the options object" },
);

export function resolveActorOptions(opts: ActorOptions | undefined, where = "actor options"): ResolvedActorOptions {
  return actorOptions.parse(opts, where);
}
