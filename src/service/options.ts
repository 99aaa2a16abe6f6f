import { checkInt } from "../actor/index.ts";
import { InvalidOptionsError } from "../errors/index.ts";
import type { Services } from "../registry/index.ts";
import { validateName } from "../subjects/index.ts";

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
  /** Restarts of one replica (with backoff) before it is marked failed; the count resets after stableMs healthy. */
  maxRestarts?: number;
  /** Times a call is re-sent to another replica after its replica crashed (never for exceptions the method threw). */
  maxTaskRetries?: number;
  /** First restart delay; doubles per restart up to maxBackoffMs. */
  restartBackoffMs?: number;
  maxBackoffMs?: number;
  /** A replica healthy this long has its restart count reset. */
  stableMs?: number;
  /** "least-loaded" (default): fewest outstanding calls among healthy replicas; "queue-group": NATS picks. */
  routing?: Routing;
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
  maxTaskRetries: number;
  restartBackoffMs: number;
  maxBackoffMs: number;
  stableMs: number;
  routing: Routing;
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
  maxTaskRetries: 0,
  restartBackoffMs: 100,
  maxBackoffMs: 5_000,
  stableMs: 60_000,
  routing: "least-loaded",
  placement: "auto",
  healthIntervalMs: 1_000,
  startTimeoutMs: 30_000,
  drainTimeoutMs: 5_000,
  version: "0.0.0",
  description: "",
  metadata: {},
  env: {},
});

const KNOWN = new Set([...Object.keys(SERVICE_DEFAULTS), "services", "namespace", "servers"]);
const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

/** Checks the keys and types of a (partial) options object; options() calls it eagerly. */
export function checkServiceOptions(o: ServiceOptions, where: string): void {
  if (typeof o !== "object" || o === null) throw new InvalidOptionsError(`${where} must be an object such as { numReplicas: 2 }`);
  for (const k of Object.keys(o)) {
    if (!KNOWN.has(k)) {
      throw new InvalidOptionsError(`${where}: unknown option "${k}"; valid options are ${[...KNOWN].join(", ")}`, { details: { option: k } });
    }
  }
}

export function resolveServiceOptions(o: ServiceOptions, where = "service options"): ResolvedServiceOptions {
  checkServiceOptions(o, where);
  const defined = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  const r = { ...SERVICE_DEFAULTS, services: undefined, namespace: undefined, servers: undefined, ...defined } as ResolvedServiceOptions;
  r.metadata = { ...(o.metadata ?? {}) };
  r.env = { ...(o.env ?? {}) };
  checkInt(where, "numReplicas", r.numReplicas, 1, "use 1 or more replicas");
  checkInt(where, "procs", r.procs, 1, "processes per replica");
  if (r.hosts !== null) {
    checkInt(where, "hosts", r.hosts, 1, "hosts per replica, or null for as few as fit");
    if (r.procs % r.hosts !== 0) {
      throw new InvalidOptionsError(`${where}: procs (${r.procs}) must be a multiple of hosts (${r.hosts}) so every host runs the same number of processes`, { details: { option: "hosts" } });
    }
  }
  if (typeof r.withGpus !== "boolean") throw new InvalidOptionsError(`${where}: withGpus must be true or false`, { details: { option: "withGpus" } });
  if (r.meshName !== null) validateName("service", r.meshName);
  checkInt(where, "maxConcurrency", r.maxConcurrency, 1, "use 1 for one call at a time per process");
  checkInt(where, "maxPending", r.maxPending, 0, "use 0 to reject calls while every replica is busy");
  checkInt(where, "timeoutMs", r.timeoutMs, 1, "deadlines are in milliseconds");
  checkInt(where, "maxRestarts", r.maxRestarts, 0, "use 0 to never restart a crashed replica");
  checkInt(where, "maxTaskRetries", r.maxTaskRetries, 0, "use 0 to fail calls of a crashed replica with ReplicaCrashedError");
  checkInt(where, "restartBackoffMs", r.restartBackoffMs, 0, "milliseconds before the first restart");
  checkInt(where, "maxBackoffMs", r.maxBackoffMs, 0, "the longest delay between restarts, in milliseconds");
  checkInt(where, "stableMs", r.stableMs, 0, "milliseconds a replica must stay healthy to reset its restart count");
  checkInt(where, "healthIntervalMs", r.healthIntervalMs, 50, "milliseconds between heartbeats");
  checkInt(where, "startTimeoutMs", r.startTimeoutMs, 1, "milliseconds a replica may take to start");
  checkInt(where, "drainTimeoutMs", r.drainTimeoutMs, 0, "milliseconds to let in-flight calls finish on shutdown");
  if (!(ROUTINGS as readonly string[]).includes(r.routing)) {
    throw new InvalidOptionsError(`${where}: routing must be one of ${ROUTINGS.map((x) => `"${x}"`).join(", ")}`, { details: { option: "routing" } });
  }
  if (r.routing === "queue-group" && r.procs > 1) {
    throw new InvalidOptionsError(`${where}: routing "queue-group" sends a call to one process, so it needs procs 1; use "least-loaded" for multi-process replicas`, { details: { option: "routing" } });
  }
  if (!(PLACEMENTS as readonly string[]).includes(r.placement)) {
    throw new InvalidOptionsError(`${where}: placement must be one of ${PLACEMENTS.map((x) => `"${x}"`).join(", ")}`, { details: { option: "placement" } });
  }
  if (typeof r.version !== "string" || !SEMVER.test(r.version)) {
    throw new InvalidOptionsError(`${where}: version must be a semantic version such as "1.2.0" (NATS micro requires it)`, { details: { option: "version" } });
  }
  for (const [k, v] of Object.entries({ ...r.metadata, ...r.env })) {
    if (typeof v !== "string") throw new InvalidOptionsError(`${where}: metadata and env values must be strings ("${k}" is ${typeof v})`);
  }
  if (r.namespace !== undefined) validateName("namespace", r.namespace);
  if (r.services !== undefined && (r.namespace !== undefined || r.servers !== undefined)) {
    throw new InvalidOptionsError(`${where}: give either services or namespace/servers, not both (services already has a namespace and a connection)`);
  }
  return r;
}
