import { hostname } from "node:os";
import { configureChunks } from "../chunks/index.ts";
import { CONNECTION_CHECKS, connectBus, connectionOptions, createLocalBus, localConnection, loggerCheck, type BusConnection, type ConnectionOptions, type LocalBus, type Logger } from "../connection/index.ts";
import { InvalidOptionsError } from "../errors/index.ts";
import type { Metrics } from "../metrics/index.ts";
import { custom, defineOptions, durationMs, int, obj, oneOf, type SpecFor } from "../options/index.ts";
import { subjectsFor, validateName } from "../subjects/index.ts";
import { openKvStore } from "./kv-store.ts";
import { createMemoryStore } from "./memory-store.ts";
import { createRegistry } from "./services.ts";
import type { RegistryStore } from "./store.ts";
import type { Services } from "./types.ts";

export const BACKENDS = ["nats", "local"] as const;
export type Backend = (typeof BACKENDS)[number];

export interface GetServicesOptions extends ConnectionOptions {
  /** "nats" (default): the registry is a JetStream KV bucket. "local": in this process only. */
  backend?: Backend;
  /** Isolates services: becomes the subject prefix ab.<namespace> and bucket actorbus_<namespace>. */
  namespace?: string;
  /** Reuse a connection (one per process is best); it is then left open by close(). */
  connection?: BusConnection;
  /** Default call deadline of handles, when the service sets none. */
  timeoutMs?: number;
  /** Deadline of liveness pings and stop requests. */
  controlTimeoutMs?: number;
  /**
   * How long a registered service must stay unreachable before get/has/list/register treat its
   * entry as stale and remove it (longer than a client reconnect; default 1500).
   */
  staleAfterMs?: number;
  /**
   * JetStream replicas of the registry bucket; "auto" (default): 3 on a cluster of 3 or more
   * servers, else 1.
   */
  registryReplicas?: number | "auto";
  /** This process's identity as a host (shown by `actorbus ls`); default: the hostname. */
  hostId?: string;
  /** Local backend only: the in-process bus to use (default: one shared by the whole process). */
  localBus?: LocalBus;
  /**
   * Where the actors this registry hosts report malformed inbound messages; each host limits it
   * to 10 lines per 10 s plus a summary. Default: stderr.
   */
  logger?: Logger;
  /**
   * Prometheus metrics (createMetrics()): the calls of the actors this registry hosts and of its
   * handles, in-flight and queue depth, and the services launched with it. Default: none, and
   * the call path pays nothing for them.
   */
  metrics?: Metrics;
}

const GET_SERVICES_CHECKS = {
  ...CONNECTION_CHECKS,
  backend: oneOf(BACKENDS),
  namespace: (v: unknown) => validateName("namespace", v),
  connection: obj<BusConnection>("pass the result of connectBus(), or leave it out to connect here", ["close", "onClose"]),
  timeoutMs: durationMs({ min: 1, hint: "the default deadline of handle calls" }),
  controlTimeoutMs: durationMs({ min: 1, hint: "the deadline of liveness pings and stop requests" }),
  staleAfterMs: durationMs({ min: 0, hint: "keep it above the reconnect time" }),
  registryReplicas: custom<number | "auto">((v) => v === "auto" || (typeof v === "number" && Number.isInteger(v) && v >= 1), '"auto" or an integer >= 1', "use 1, 3 or 5, or \"auto\""),
  hostId: (v: unknown) => validateName("host id", v),
  localBus: obj<LocalBus>("pass the result of createLocalBus()"),
  logger: loggerCheck,
  metrics: obj<Metrics>("pass the result of await createMetrics()", ["expose"]),
} satisfies SpecFor<GetServicesOptions>;

export const getServicesOptions = defineOptions(
  "getServices options",
  GET_SERVICES_CHECKS,
  () => ({
    backend: "nats" as Backend,
    namespace: "default",
    timeoutMs: 30_000,
    controlTimeoutMs: 2_000,
    staleAfterMs: 1_500,
    registryReplicas: "auto" as const,
    hostId: hostname().replace(/[^A-Za-z0-9_-]/g, "_") || "host",
  }),
  { example: '{ namespace: "rl", servers: "nats://127.0.0.1:4222" }' },
);

// The local backend is "a cluster inside this process": two getServices({backend: "local"})
// calls must see each other's services, as two workers do on NATS. This one bus is the only
// process-wide state in the library, created on first use; pass `localBus` to isolate.
let processLocalBus: LocalBus | undefined;

export async function getServices(given: GetServicesOptions = {}): Promise<Services> {
  const options = getServicesOptions.parse(given);
  const { backend, timeoutMs, controlTimeoutMs, staleAfterMs, hostId, logger, metrics } = options;
  const subjects = subjectsFor(options.namespace);

  let conn: BusConnection;
  let store: RegistryStore;
  let ownsConnection = false;
  if (backend === "local") {
    if (options.connection && options.connection.backend !== "local") throw new InvalidOptionsError('backend "local" cannot use a NATS connection; drop `connection` or use backend "nats"');
    const bus = options.localBus ?? (processLocalBus ??= createLocalBus());
    conn = options.connection ?? localConnection(bus);
    ownsConnection = !options.connection;
    configureChunks(conn, options);
    let s = bus.buckets.get(subjects.bucket) as RegistryStore | undefined;
    if (!s) bus.buckets.set(subjects.bucket, (s = createMemoryStore()));
    store = s;
  } else {
    if (options.connection && options.connection.backend !== "nats") throw new InvalidOptionsError('backend "nats" needs a NATS connection; the given one is local');
    conn = options.connection ?? (await connectBus(connectionOptions.pick(options)));
    ownsConnection = !options.connection;
    // A connection passed in takes this entry's limits too, when any are given.
    configureChunks(conn, options);
    try {
      // The servers a cluster advertises are what "auto" replication can count on placing.
      const advertised = conn.nc!.info?.connect_urls?.length;
      store = await openKvStore(conn.nc!, subjects.bucket, {
        replicas: options.registryReplicas,
        clustered: conn.clustered,
        clusterSize: conn.clustered && advertised ? advertised : conn.clustered ? undefined : 1,
      });
    } catch (err) {
      if (ownsConnection) await conn.close();
      throw err;
    }
  }
  return createRegistry({ conn, ownsConnection, store, subjects, timeoutMs, hostId, controlTimeoutMs, staleAfterMs, logger, metrics });
}
