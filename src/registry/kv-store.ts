import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, JetStreamApiCodes, JetStreamApiError, StorageType, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, KvWatchInclude, type KV } from "@nats-io/kv";
import {
  ActorBusError,
  ClosedError,
  InvalidOptionsError,
  JetStreamNotEnabledError,
  PermissionError,
  RegistryError,
  ServiceUnavailableError,
} from "../errors/index.ts";
import type { RegistryStore, StoreChange, StoreWatch } from "./store.ts";

export interface KvStoreOptions {
  /** JetStream replicas of the bucket; "auto": 3 when the cluster has 3 or more servers, else 1. */
  replicas: number | "auto";
  clustered: boolean;
  /** Servers of the cluster as the server's INFO lists them (connect_urls), when it does. */
  clusterSize?: number;
  /**
   * How long a delete marker stays before it is purged from the stream. Watches learn of a
   * removal from the marker, so it must outlive their delivery; after that it is dead weight
   * that every later key listing would pay for.
   */
  markerGraceMs?: number;
}

const DEFAULT_MARKER_GRACE_MS = 2_000;
/** Purge requests in flight at once while sweeping markers (30k removals must not be 30k requests at once). */
const SWEEP_CONCURRENCY = 32;
/** A marker whose purge keeps failing (no leader, say) is retried this many times, then left to the next get(). */
const SWEEP_ATTEMPTS = 5;

// JetStream API error codes this module tells apart (nats-server's errors.json).
const NO_SUITABLE_PEERS = 10005;
const INSUFFICIENT_RESOURCES = 10023;
const CLUSTER_NOT_AVAILABLE = 10008;
const NOT_ENABLED_FOR_ACCOUNT = 10039;
const NOT_ENABLED = 10076;
const STREAM_OFFLINE = 10118;
/** A message delete that failed; "no message found" when a newer value already replaced it. */
const MSG_DELETE_FAILED = 10057;

// The KV protocol's headers (ADR-8): a purge marker is an empty message with these, which is
// what @nats-io/kv's purge() sends. Sent here directly because its ack carries the marker's
// sequence, which the marker's own later purge needs.
const KV_OPERATION = "KV-Operation";
const ROLLUP = "Nats-Rollup";
const EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence";

const isConflict = (err: unknown) =>
  err instanceof JetStreamApiError &&
  (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);

interface Context {
  bucket: string;
  /** While opening, "no responders" on the JetStream API means JetStream is off on the server. */
  opening?: boolean;
  replicas?: number;
  clusterSize?: number;
  /** The server's INFO says it runs JetStream (undefined: it does not say). */
  serverHasJetStream?: boolean;
}

const oddAtMost = (n: number) => (n >= 3 ? (n % 2 === 1 ? Math.min(n, 5) : Math.min(n - 1, 5)) : 1);

/** Every failure of the bucket as an ActorBusError whose message names the fix. */
function explain(err: unknown, c: Context): ActorBusError {
  if (err instanceof ActorBusError) return err;
  const m = String((err as Error)?.message ?? err);
  const name = (err as Error)?.name ?? "";
  const code = err instanceof JetStreamApiError ? err.code : undefined;
  const b = c.bucket;
  const base = { cause: err, details: { bucket: b, ...(code === undefined ? {} : { jetStreamCode: code }) } };

  if (/permission|authoriz/i.test(m)) {
    return new PermissionError(`not allowed to use the registry bucket ${b}: ${m}; this user needs publish on $KV.${b}.> and the JetStream API of stream KV_${b} (see the TENANT_A permissions in nats.conf), or the namespace is another tenant's`, base);
  }
  if (code === NOT_ENABLED_FOR_ACCOUNT || code === NOT_ENABLED || /not enabled for account/i.test(m)) {
    return new JetStreamNotEnabledError(`JetStream is not enabled for this NATS account, and the registry (bucket ${b}) needs it: enable it for the account (\`jetstream: enabled\` in its block of the server config, as the DEV account of nats.conf does), or use backend: "local" within one process`, base);
  }
  if (code === NO_SUITABLE_PEERS || code === INSUFFICIENT_RESOURCES) {
    const r = c.replicas ?? 0;
    const n = c.clusterSize;
    if (n !== undefined && n < r) {
      const has = n === 1 ? "there is 1 JetStream server (no cluster)" : `the cluster has ${n} JetStream servers`;
      return new InvalidOptionsError(`cannot create the registry bucket ${b} with ${r} replicas: ${has}; use registryReplicas: ${oddAtMost(n)} or add a server`, { cause: err, details: { ...base.details, replicas: r, servers: n } });
    }
    return new ServiceUnavailableError(
      `cannot place ${r || "the"} replicas of the registry bucket ${b}: fewer JetStream servers than that are up${n === undefined ? "" : ` (the cluster lists ${n})`} (${m}); retry once they are back, or use registryReplicas: 1`,
      { cause: err, details: { ...base.details, replicas: r, ...(n === undefined ? {} : { servers: n }) } },
    );
  }
  if (c.opening && (name === "JetStreamNotEnabled" || /jetstream is not enabled|no responders/i.test(m)) && c.serverHasJetStream !== true) {
    return new JetStreamNotEnabledError(`the NATS server has JetStream off, and the registry (bucket ${b}) needs it: start it with -js (or a \`jetstream {}\` block in its config; nats.conf in the actorbus checkout has one), or use backend: "local" within one process`, base);
  }
  // Once JetStream is known to be on, no responders (nats.js reports it as "jetstream is not
  // enabled") means the bucket's stream has no leader right now: a node was lost, an election
  // is under way, or quorum is gone until a node comes back.
  if (name === "JetStreamNotEnabled" || /no responders|jetstream is not enabled/i.test(m)) {
    return new ServiceUnavailableError(`the registry bucket ${b} has no JetStream leader right now (a server is down or an election is under way); retry`, base);
  }
  if (code === CLUSTER_NOT_AVAILABLE || code === STREAM_OFFLINE || /temporarily unavailable|offline|no leader|quorum/i.test(m)) {
    return new ServiceUnavailableError(`the registry bucket ${b} is unavailable right now (${m}: JetStream has lost quorum or is electing a leader); retry, and check that a majority of the cluster's servers are up`, base);
  }
  if (name === "TimeoutError" || /timeout/i.test(m)) {
    return new ServiceUnavailableError(`the registry bucket ${b} did not answer in time (JetStream busy, electing a leader, or without quorum); retry`, base);
  }
  if (/closed|draining/i.test(name) || /connection closed|closed connection|draining/i.test(m)) {
    return new ClosedError(`the NATS connection of the registry (bucket ${b}) is closed: open the registry again with getServices()`, base);
  }
  if (code === JetStreamApiCodes.StreamNotFound) {
    return new RegistryError(`the registry bucket ${b} is gone (its stream KV_${b} was deleted while in use): open the registry again with getServices(), which creates it`, base);
  }
  return new RegistryError(`the registry bucket ${b} failed: ${m}${code === undefined ? "" : ` (JetStream error ${code})`}`, base);
}

/** The replica counts to try, best first: "auto" settles for fewer when the cluster cannot place 3. */
function replicaChoices(opts: KvStoreOptions): number[] {
  if (opts.replicas !== "auto") return [opts.replicas];
  if (!opts.clustered) return [1];
  const n = opts.clusterSize;
  if (n !== undefined && n > 0) return oddAtMost(n) >= 3 ? [3, 1] : [1];
  return [3, 1]; // a cluster that does not advertise its servers: try, and fall back
}

export async function openKvStore(nc: NatsConnection, bucket: string, opts: KvStoreOptions): Promise<RegistryStore> {
  const serverHasJetStream = (nc.info as { jetstream?: boolean } | undefined)?.jetstream;
  const ctx: Context = { bucket, clusterSize: opts.clusterSize, serverHasJetStream };
  const js: JetStreamClient = jetstream(nc);
  let kv: KV | undefined;
  let jsm!: JetStreamManager;
  const choices = replicaChoices(opts);
  for (let i = 0; ; i++) {
    const replicas = choices[i]!;
    try {
      kv = await new Kvm(js).create(bucket, { history: 1, storage: StorageType.File, replicas });
      jsm = await js.jetstreamManager(false);
      break;
    } catch (err) {
      const placement = err instanceof JetStreamApiError && (err.code === NO_SUITABLE_PEERS || err.code === INSUFFICIENT_RESOURCES);
      if (placement && i + 1 < choices.length) continue;
      throw explain(err, { ...ctx, opening: true, replicas });
    }
  }
  const stream = `KV_${bucket}`;
  const prefix = `$KV.${bucket}.`;
  const graceMs = opts.markerGraceMs ?? DEFAULT_MARKER_GRACE_MS;

  const guard = async <T>(f: () => Promise<T>): Promise<T> => {
    try {
      return await f();
    } catch (err) {
      throw explain(err, ctx);
    }
  };

  // Markers waiting to be purged, by subject: the marker's sequence, when it may go, attempts.
  const markers = new Map<string, { seq: number; due: number; attempts: number }>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let sweeping = false;

  const schedulePurge = (subject: string, seq: number, due: number, attempts = 0) => {
    const known = markers.get(subject);
    if (known && known.seq >= seq) return;
    markers.delete(subject); // re-inserted at the end: the map stays roughly in due order
    markers.set(subject, { seq, due, attempts });
    arm();
  };

  const arm = () => {
    if (timer || sweeping || markers.size === 0) return;
    const first = markers.values().next().value!;
    timer = setTimeout(() => void sweep(), Math.max(10, first.due - Date.now()));
    timer.unref?.();
  };

  // Deleting the marker by its sequence touches that one message, and a value written after it
  // (the name registered again) has another sequence. A user whose permissions stop at the
  // stream's PURGE API (nats.conf's tenants) gets a filtered purge up to the marker instead:
  // as exact, but the server scans the stream for it, so it is not the first choice.
  let canDelete = true;
  const removeMarker = async (subject: string, seq: number) => {
    if (canDelete) {
      try {
        await jsm.streams.deleteMessage(stream, seq, false);
        return;
      } catch (err) {
        const gone = err instanceof JetStreamApiError && (err.code === MSG_DELETE_FAILED || err.code === JetStreamApiCodes.NoMessageFound) && /no message found/i.test(err.message);
        if (gone) return; // a newer value of the key replaced it already
        if (!/permission/i.test(String((err as Error)?.message))) throw err;
        canDelete = false;
      }
    }
    await jsm.streams.purge(stream, { filter: subject, seq: seq + 1 });
  };

  const sweep = async () => {
    timer = undefined;
    sweeping = true;
    try {
      const now = Date.now();
      const ready: [string, { seq: number; due: number; attempts: number }][] = [];
      for (const [subject, mk] of markers) if (mk.due <= now) ready.push([subject, mk]);
      for (const [subject] of ready) markers.delete(subject);
      for (let i = 0; i < ready.length && !nc.isClosed(); i += SWEEP_CONCURRENCY) {
        await Promise.all(
          ready.slice(i, i + SWEEP_CONCURRENCY).map(async ([subject, mk]) => {
            try {
              await removeMarker(subject, mk.seq);
            } catch {
              if (mk.attempts + 1 < SWEEP_ATTEMPTS && !nc.isClosed()) schedulePurge(subject, mk.seq, Date.now() + graceMs, mk.attempts + 1);
            }
          }),
        );
      }
    } finally {
      sweeping = false;
      if (!nc.isClosed()) arm();
    }
  };

  const bucketKv = kv!;
  return {
    create: (key, value) =>
      guard(async () => {
        try {
          return await bucketKv.create(key, value);
        } catch (err) {
          if (isConflict(err)) return undefined;
          throw err;
        }
      }),
    put: (key, value) => guard(() => bucketKv.put(key, value)),
    get: (key) =>
      guard(async () => {
        const e = await bucketKv.get(key);
        if (!e) return undefined;
        if (e.operation !== "PUT") {
          // A marker whose purge was lost (its writer exited, say): purge it now it is seen.
          schedulePurge(prefix + key, e.revision, e.created.getTime() + graceMs);
          return undefined;
        }
        return { key, value: e.value, revision: e.revision };
      }),
    delete: (key, expectRevision) =>
      guard(async () => {
        const h = natsHeaders();
        h.set(KV_OPERATION, "PURGE");
        h.set(ROLLUP, "sub");
        if (expectRevision !== undefined) h.set(EXPECTED_LAST_SUBJECT_SEQ, String(expectRevision));
        try {
          const ack = await js.publish(prefix + key, new Uint8Array(0), { headers: h });
          schedulePurge(prefix + key, ack.seq, Date.now() + graceMs);
          return true;
        } catch (err) {
          if (isConflict(err)) return false;
          throw err;
        }
      }),
    // The stream's per-subject counts, in one API request: no consumer is created (one per call
    // would stay on the server until its inactivity timeout), and the cost follows the subjects
    // the stream still holds, which the marker sweep keeps to the live keys.
    keys: (filter) =>
      guard(async () => {
        const si = await jsm.streams.info(stream, { subjects_filter: prefix + filter });
        return Object.keys(si.state.subjects ?? {}).map((s) => s.slice(prefix.length));
      }),
    watch: (filter, includeExisting) =>
      guard(async () => {
        const it = await bucketKv.watch({ key: filter, include: includeExisting ? KvWatchInclude.LastValue : KvWatchInclude.UpdatesOnly });
        const watch: StoreWatch = {
          stop: () => it.stop(),
          async *[Symbol.asyncIterator]() {
            try {
              for await (const e of it) {
                const change: StoreChange = { key: e.key, value: e.operation === "PUT" ? e.value : undefined, revision: e.revision, writtenAt: e.created.getTime(), replayed: !e.isUpdate };
                yield change;
              }
            } catch (err) {
              throw explain(err, ctx);
            }
          },
        };
        return watch;
      }),
  };
}
