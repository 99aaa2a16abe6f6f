import { validateName } from "./names.ts";

/**
 * The only place where subject names, queue groups, bucket names and KV keys are built.
 * Everything of namespace `ns` lives under `ab.<ns>.`, so a NATS permission on `ab.<ns>.>`
 * (plus the namespace's KV bucket) confines a user to one namespace.
 *
 *   ab.<ns>.svc.<service>          method calls; hosts subscribe in queue group "actors"
 *   ab.<ns>.ctl.<service>          liveness ping answered by any one host (same queue group)
 *   ab.<ns>.inst.<instanceId>      one host instance: ping, stats, stop
 *   ab.<ns>.inf.<name>             inference requests (queue group "inference")
 *   ab.<ns>.inf.<name>.lease.<id>  lease renewals from inference servers to one client
 *   ab.<ns>.inf.<name>.cancel      [leaseSubject, seq]: a client cancels a request it sent
 *   ab.<ns>.agent.<hostId>         a host agent's control subject (spawn, stop, list)
 *   ab.<ns>.replica.<id>.<rank>    one process of a replica (service routing, issue 3)
 *   ab.<ns>.rq.<service>           replicas of a service in queue group "replicas" (queue-group routing)
 *   ab.<ns>.ctrl.<service>         a replicated service's controller: status requests
 *   ab.<ns>.routes.<service>       the controller's route table, published on change (handles route to replicas)
 *   ab.<ns>.routes.<service>.get   the current route table, on request
 *   ab.<ns>.evt.<controllerId>     replica process lifecycle events (exits) sent to one controller
 *   ab.<ns>.ver.<controllerId>     replica processes' versions (at start, and when a call changed it) sent to one controller
 *   ab.<ns>.cancel.<call subject>  cancellations of calls sent to <call subject> (every host hears)
 *   ab.<ns>.stream.<instanceId>.<id>  a caller's pulls and cancel of one stream served by an instance
 *   ab.<ns>.chunk.<connectionId>  pulls and releases of large values one connection holds (src/chunks)
 *   KV bucket actorbus_<ns>        keys svc.<service>, inst.<service>.<instanceId>, host.<hostId>
 */
export interface Subjects {
  readonly namespace: string;
  readonly prefix: string;
  readonly bucket: string;
  call(service: string): string;
  control(service: string): string;
  instance(instanceId: string): string;
  inference(name: string): string;
  /** Where inference servers renew the leases of one client's held requests. */
  inferenceLease(name: string, clientId: string): string;
  /** Where clients cancel requests they sent to an inference server (every server hears). */
  inferenceCancel(name: string): string;
  agent(hostId: string): string;
  replica(replicaId: string, rank: number): string;
  replicaQueue(service: string): string;
  controller(service: string): string;
  /** Where a replicated service's controller publishes its route table (src/registry/direct-routes.ts). */
  routes(service: string): string;
  /** Where a handle asks a replicated service's controller for its current route table. */
  routesRequest(service: string): string;
  events(controllerId: string): string;
  /** Where a service's replica processes tell its controller their `version`. */
  versions(controllerId: string): string;
  /**
   * Where a caller cancels a call it sent to `callSubject` (one of this namespace's call or
   * replica subjects). Not a queue group: the caller cannot know which host took the call.
   */
  cancel(callSubject: string): string;
  /** Where the caller of one stream pulls items from the instance serving it. */
  stream(instanceId: string, streamId: string): string;
  /** Where receivers pull the chunks of large values one connection holds, and release them. */
  chunks(connectionId: string): string;
  /** Every stream of one instance (the instance subscribes once). */
  streams(instanceId: string): string;
  /** Inverse of stream(): the stream id, or undefined. */
  streamIdOf(subject: string): string | undefined;
  /** Wildcard that matches every subject of the namespace (for permissions and fuzzing). */
  all(): string;
  serviceKey(service: string): string;
  serviceKeyFilter(): string;
  instanceKey(service: string, instanceId: string): string;
  instanceKeyFilter(service?: string): string;
  hostKey(hostId: string): string;
  hostKeyFilter(): string;
  /** Inverse of serviceKey; undefined for keys that are not service records. */
  serviceFromKey(key: string): string | undefined;
}

export const QUEUE_ACTORS = "actors";
export const QUEUE_INFERENCE = "inference";
export const QUEUE_REPLICAS = "replicas";
/**
 * The queue group of one subscription that has no group of its own: with one member it behaves
 * as a plain subscription, and the copy a connection makes of it elsewhere while it moves off a
 * server in lame-duck mode (src/connection/lame-duck.ts) shares the group, so no message is
 * delivered to both.
 */
export const privateQueue = (unique: string): string => `_ab_${unique}`;
const SERVICE_KEY_PREFIX = "svc.";

const BUCKET_PREFIX = "actorbus_";

/** Inverse of a namespace's bucket name: the namespace, or undefined for other buckets. */
export function namespaceOfBucket(bucket: string): string | undefined {
  if (!bucket.startsWith(BUCKET_PREFIX)) return undefined;
  const ns = bucket.slice(BUCKET_PREFIX.length);
  try {
    return validateName("namespace", ns);
  } catch {
    return undefined;
  }
}

export function subjectsFor(namespace: string): Subjects {
  const ns = validateName("namespace", namespace);
  const prefix = `ab.${ns}`;
  return {
    namespace: ns,
    prefix,
    bucket: `${BUCKET_PREFIX}${ns}`,
    call: (s) => `${prefix}.svc.${validateName("service", s)}`,
    control: (s) => `${prefix}.ctl.${validateName("service", s)}`,
    instance: (id) => `${prefix}.inst.${id}`,
    inference: (n) => `${prefix}.inf.${validateName("inference server", n)}`,
    inferenceLease: (n, id) => `${prefix}.inf.${validateName("inference server", n)}.lease.${validateName("client id", id)}`,
    inferenceCancel: (n) => `${prefix}.inf.${validateName("inference server", n)}.cancel`,
    agent: (h) => `${prefix}.agent.${validateName("host id", h)}`,
    replica: (id, rank) => `${prefix}.replica.${id}.${rank}`,
    replicaQueue: (s) => `${prefix}.rq.${validateName("service", s)}`,
    controller: (s) => `${prefix}.ctrl.${validateName("service", s)}`,
    routes: (s) => `${prefix}.routes.${validateName("service", s)}`,
    routesRequest: (s) => `${prefix}.routes.${validateName("service", s)}.get`,
    events: (id) => `${prefix}.evt.${id}`,
    versions: (id) => `${prefix}.ver.${id}`,
    cancel: (callSubject) => {
      if (!callSubject.startsWith(`${prefix}.`)) throw new Error(`${callSubject} is not a subject of namespace ${ns}`);
      return `${prefix}.cancel.${callSubject.slice(prefix.length + 1)}`;
    },
    stream: (id, streamId) => `${prefix}.stream.${id}.${streamId}`,
    streams: (id) => `${prefix}.stream.${id}.*`,
    chunks: (id) => `${prefix}.chunk.${id}`,
    streamIdOf: (subject) => {
      const dot = subject.lastIndexOf(".");
      return subject.startsWith(`${prefix}.stream.`) && dot > 0 ? subject.slice(dot + 1) : undefined;
    },
    all: () => `${prefix}.>`,
    serviceKey: (s) => `${SERVICE_KEY_PREFIX}${validateName("service", s)}`,
    serviceKeyFilter: () => `${SERVICE_KEY_PREFIX}*`,
    instanceKey: (s, id) => `inst.${s}.${id}`,
    instanceKeyFilter: (s) => (s === undefined ? "inst.>" : `inst.${s}.*`),
    hostKey: (h) => `host.${validateName("host id", h)}`,
    hostKeyFilter: () => "host.*",
    serviceFromKey: (k) => (k.startsWith(SERVICE_KEY_PREFIX) ? k.slice(SERVICE_KEY_PREFIX.length) : undefined),
  };
}

/** The reply inbox of one connection: `<inboxPrefix>.<nuid>.<requestId>`. */
export function replyInbox(inboxPrefix: string, unique: string): { wildcard: string; prefix: string } {
  const base = `${inboxPrefix}.${unique}.`;
  return { wildcard: `${base}*`, prefix: base };
}

/**
 * The prefix of a reply subject made by replyInbox() (everything up to its last token): calls
 * of one batch have their replies at this prefix plus their own tokens.
 */
export function replyPrefixOf(reply: string): string {
  return reply.slice(0, reply.lastIndexOf(".") + 1);
}

/** NATS micro-service discovery subjects (ADR-32): $SRV.<verb>[.<name>[.<id>]]. */
export function microSubjects(verb: "PING" | "INFO" | "STATS", name: string, id: string): string[] {
  return [`$SRV.${verb}`, `$SRV.${verb}.${name}`, `$SRV.${verb}.${name}.${id}`];
}
