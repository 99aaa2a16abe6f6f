import { InvalidOptionsError } from "../errors/index.ts";
import { bool, custom, defineOptions, durationMs, int, nullable, obj, oneOf, oneOrMany, str, stringRecord, type SpecFor } from "../options/index.ts";
import type { Services } from "../registry/index.ts";
import { validateName } from "../subjects/index.ts";
import { checkOutlierEjection, OUTLIER_DEFAULTS, type OutlierEjectionOptions, type ResolvedOutlierOptions } from "./outliers.ts";
import { checkRouter, type RouterSpec } from "./router.ts";

export const ROUTINGS = ["least-loaded", "queue-group"] as const;
export type Routing = (typeof ROUTINGS)[number];
export const PLACEMENTS = ["auto", "agents", "local"] as const;
export type PlacementMode = (typeof PLACEMENTS)[number];

/** ForgeActor's options() plus what replicas, routing and supervision need on a bus. */
export interface ServiceOptions {
  /** Replicas when launched with asService() (asActor() always launches one). Default 1. */
  numReplicas?: number;
  /** Processes per replica; each runs the class with its own rank (0..procs-1). Default 1. */
  procs?: number;
  /** Hosts one replica spans (procs are split evenly); null: as few as fit. Default null. */
  hosts?: number | null;
  /** One GPU per process, from agents started with --gpus (CUDA_VISIBLE_DEVICES is set). */
  withGpus?: boolean;
  /** The service's name in the registry; default: the class name in lower case. */
  meshName?: string | null;

  /** Calls one replica process runs at once (1: in order, like an actor mailbox). */
  maxConcurrency?: number;
  /** Calls that may wait per replica beyond maxConcurrency; beyond that on every replica: OverloadedError. */
  maxPending?: number;
  /** Deadline of each call. */
  timeoutMs?: number;
  /**
   * Restarts of one replica (with backoff) allowed within restartWindowMs; one more crash in the
   * window is a crash loop and the replica is marked failed. -1: no limit (Ray's max_restarts).
   * A replica with no host to run on waits for capacity without spending restarts.
   */
  maxRestarts?: number;
  /** The window maxRestarts counts restarts in. Default 60000. */
  restartWindowMs?: number;
  /** Times a call is re-sent to another replica after its replica crashed (never for exceptions the method threw). */
  maxTaskRetries?: number;
  /** First restart delay; doubles per restart up to maxBackoffMs. */
  restartBackoffMs?: number;
  maxBackoffMs?: number;
  /** A replica healthy this long before it dies starts with a clean restart budget. */
  stableMs?: number;
  /**
   * Outlier ejection: a replica whose calls get no reply by their deadlines while other
   * replicas answer (or whose heartbeat stalls) leaves routing until a probe finds it answering.
   * true (default), false, or { consecutiveTimeouts, ejectionMs, maxEjectionMs, maxEjectedPercent, probeTimeoutMs }.
   */
  outlierEjection?: boolean | OutlierEjectionOptions;
  /** "least-loaded" (default): the controller picks among healthy replicas, with `router`; "queue-group": NATS picks. */
  routing?: Routing;
  /**
   * How the controller picks a replica when routing is "least-loaded" (the controller routes):
   * "least-loaded" (default), "round-robin", "random", or a function
   * `(candidates, call) => candidate | undefined` given the replicas with room and the call's
   * method, args and metadata (e.g. hashing a prompt prefix for cache affinity). Not with
   * routing "queue-group", where NATS picks.
   */
  router?: RouterSpec;
  /** "auto" (default): on agents if any is running, else child processes of this one. */
  placement?: PlacementMode;
  /** Heartbeat period of the controller's liveness pings (the backstop to exit events). */
  healthIntervalMs?: number;
  /** How long one replica may take to start (import, construct, setup()). */
  startTimeoutMs?: number;
  /** How long shutdown() lets in-flight calls finish, and processes exit after SIGTERM. */
  drainTimeoutMs?: number;
  /** Version in $SRV.INFO (semver). */
  version?: string;
  description?: string;
  /** Labels in the registry record and $SRV metadata. */
  metadata?: Record<string, string>;
  /** Extra environment variables of replica processes. */
  env?: Record<string, string>;

  /** The registry (namespace and connection) to use; left open by shutdown(). */
  services?: Services;
  /** Without `services`: the namespace (default "default") and servers (default NATS_URL). */
  namespace?: string;
  servers?: string | string[];
}

export interface ResolvedServiceOptions {
  numReplicas: number;
  procs: number;
  hosts: number | null;
  withGpus: boolean;
  meshName: string | null;
  maxConcurrency: number;
  maxPending: number;
  timeoutMs: number;
  maxRestarts: number;
  restartWindowMs: number;
  maxTaskRetries: number;
  restartBackoffMs: number;
  maxBackoffMs: number;
  stableMs: number;
  outlierEjection: ResolvedOutlierOptions | false;
  routing: Routing;
  router: RouterSpec;
  placement: PlacementMode;
  healthIntervalMs: number;
  startTimeoutMs: number;
  drainTimeoutMs: number;
  version: string;
  description: string;
  metadata: Record<string, string>;
  env: Record<string, string>;
  services: Services | undefined;
  namespace: string | undefined;
  servers: string | string[] | undefined;
}

export const SERVICE_DEFAULTS: Omit<ResolvedServiceOptions, "services" | "namespace" | "servers"> = Object.freeze({
  numReplicas: 1,
  procs: 1,
  hosts: null,
  withGpus: false,
  meshName: null,
  maxConcurrency: 1,
  maxPending: 1024,
  timeoutMs: 30_000,
  maxRestarts: 3,
  restartWindowMs: 60_000,
  maxTaskRetries: 0,
  restartBackoffMs: 100,
  maxBackoffMs: 5_000,
  stableMs: 60_000,
  outlierEjection: OUTLIER_DEFAULTS,
  routing: "least-loaded",
  router: "least-loaded",
  placement: "auto",
  healthIntervalMs: 1_000,
  startTimeoutMs: 30_000,
  drainTimeoutMs: 5_000,
  version: "0.0.0",
  description: "",
  metadata: {},
  env: {},
});

const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

const serviceOptions = defineOptions(
  "service options",
  {
    numReplicas: int({ min: 1, hint: "use 1 or more replicas" }),
    procs: int({ min: 1, hint: "processes per replica" }),
    hosts: nullable(int({ min: 1, hint: "hosts per replica, or null for as few as fit" })),
    withGpus: bool(),
    meshName: nullable((v: unknown) => validateName("service", v)),
    maxConcurrency: int({ min: 1, hint: "use 1 for one call at a time per process" }),
    maxPending: int({ min: 0, hint: "use 0 to reject calls while every replica is busy" }),
    timeoutMs: durationMs({ min: 1, hint: "the deadline of each call" }),
    maxRestarts: int({ min: -1, hint: "use 0 to never restart a crashed replica, -1 for no limit" }),
    restartWindowMs: durationMs({ min: 1, hint: "the window maxRestarts counts restarts in" }),
    maxTaskRetries: int({ min: 0, hint: "use 0 to fail calls of a crashed replica with ReplicaCrashedError" }),
    restartBackoffMs: durationMs({ min: 0, hint: "the delay before the first restart" }),
    maxBackoffMs: durationMs({ min: 0, hint: "the longest delay between restarts" }),
    stableMs: durationMs({ min: 0, hint: "how long a replica must stay healthy to reset its restart count" }),
    outlierEjection: checkOutlierEjection,
    routing: oneOf(ROUTINGS),
    router: checkRouter,
    placement: oneOf(PLACEMENTS),
    healthIntervalMs: durationMs({ min: 50, hint: "the period between heartbeats" }),
    startTimeoutMs: durationMs({ min: 1, hint: "how long a replica may take to start" }),
    drainTimeoutMs: durationMs({ min: 0, hint: "how long to let in-flight calls finish on shutdown" }),
    version: custom<string>((v) => typeof v === "string" && SEMVER.test(v), 'a semantic version such as "1.2.0"', "NATS micro requires it"),
    description: str(),
    metadata: stringRecord('labels such as { team: "rl" }'),
    env: stringRecord('variables such as { OMP_NUM_THREADS: "1" }'),
    services: obj<Services>("pass the result of getServices(), or namespace/servers instead", ["get", "close"]),
    namespace: (v: unknown) => validateName("namespace", v),
    servers: oneOrMany(str({ expected: "a URL such as nats://127.0.0.1:4222 (or a list of them)" })),
  } satisfies SpecFor<ServiceOptions>,
  // metadata and env are copied by their checker, so the frozen defaults are never handed out.
  () => ({ ...SERVICE_DEFAULTS }),
  { example: "{ numReplicas: 2 }" },
);

/** Checks the keys and the given values of a (partial) options object; options() calls it eagerly. */
export function checkServiceOptions(o: ServiceOptions, where: string): void {
  serviceOptions.check(o, where);
}

export function resolveServiceOptions(o: ServiceOptions, where = "service options"): ResolvedServiceOptions {
  const r: ResolvedServiceOptions = serviceOptions.parse(o, where);
  if (r.hosts !== null && r.procs % r.hosts !== 0) {
    throw new InvalidOptionsError(`${where}: procs (${r.procs}) must be a multiple of hosts (${r.hosts}) so every host runs the same number of processes`, { details: { option: "hosts" } });
  }
  if (r.routing === "queue-group" && r.procs > 1) {
    throw new InvalidOptionsError(`${where}: routing "queue-group" sends a call to one process, so it needs procs 1; use "least-loaded" for multi-process replicas`, { details: { option: "routing" } });
  }
  if (r.routing === "queue-group" && o.router !== undefined) {
    throw new InvalidOptionsError(
      `${where}: router applies only when the controller routes; with routing "queue-group" NATS picks the replica and no router runs: drop router (or set it to undefined), or drop routing "queue-group"`,
      { details: { option: "router" } },
    );
  }
  if (r.services !== undefined && (r.namespace !== undefined || r.servers !== undefined)) {
    throw new InvalidOptionsError(`${where}: give either services or namespace/servers, not both (services already has a namespace and a connection)`, { details: { option: "services" } });
  }
  return r;
}
