import { JetStreamApiCodes, JetStreamApiError, StorageType } from "@nats-io/jetstream";
import { Kvm, KvWatchInclude, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { ActorBusError, PermissionError, ServiceUnavailableError } from "../errors/index.ts";
import type { RegistryStore, StoreChange, StoreWatch } from "./store.ts";

export interface KvStoreOptions {
  /** JetStream replicas of the bucket; "auto": 3 on a cluster, 1 on a single server. */
  replicas: number | "auto";
  clustered: boolean;
}

const isConflict = (err: unknown) =>
  err instanceof JetStreamApiError &&
  (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);

function explain(err: unknown, bucket: string, opening = false): unknown {
  const m = (err as Error)?.message ?? "";
  // Once the bucket is open, "not enabled"/no responders means its stream has no leader for a
  // moment (a node was lost and an election is under way), not that JetStream is off.
  if (!opening && /jetstream not enabled|no responders/i.test(m)) {
    return new ServiceUnavailableError(`the registry bucket ${bucket} has no JetStream leader right now (failover in progress); retry`, { cause: err });
  }
  if (/permission|authoriz/i.test(m)) {
    return new PermissionError(`not allowed to use the registry bucket ${bucket}: ${m}; this user needs publish on $KV.${bucket}.> and the JetStream API of stream KV_${bucket} (see the TENANT_A permissions in nats.conf), or the namespace is another tenant's`, { cause: err });
  }
  if (/jetstream not enabled|503|no responders/i.test(m)) {
    return new ActorBusError(`the NATS server has no JetStream (the registry needs it): start it with -js, or use nats.conf from the actorbus checkout`, { cause: err });
  }
  if ((err as Error)?.name === "TimeoutError") {
    // Typically a JetStream leader election after a node loss: retry shortly.
    return new ServiceUnavailableError(`the registry bucket ${bucket} did not answer in time (JetStream busy or electing a leader); retry`, { cause: err });
  }
  return err;
}

export async function openKvStore(nc: NatsConnection, bucket: string, opts: KvStoreOptions): Promise<RegistryStore> {
  const replicas = opts.replicas === "auto" ? (opts.clustered ? 3 : 1) : opts.replicas;
  let kv: KV;
  try {
    kv = await new Kvm(nc).create(bucket, { history: 1, storage: StorageType.File, replicas });
  } catch (err) {
    throw explain(err, bucket, true);
  }
  const guard = async <T>(f: () => Promise<T>): Promise<T> => {
    try {
      return await f();
    } catch (err) {
      throw explain(err, bucket);
    }
  };
  return {
    create: (key, value) =>
      guard(async () => {
        try {
          return await kv.create(key, value);
        } catch (err) {
          if (isConflict(err)) return undefined;
          throw err;
        }
      }),
    put: (key, value) => guard(() => kv.put(key, value)),
    get: (key) =>
      guard(async () => {
        const e = await kv.get(key);
        if (!e || e.operation !== "PUT") return undefined;
        return { key, value: e.value, revision: e.revision };
      }),
    delete: (key, expectRevision) =>
      guard(async () => {
        try {
          await kv.purge(key, expectRevision === undefined ? undefined : { previousSeq: expectRevision });
          return true;
        } catch (err) {
          if (isConflict(err)) return false;
          throw err;
        }
      }),
    keys: (filter) =>
      guard(async () => {
        const out: string[] = [];
        for await (const k of await kv.keys(filter)) out.push(k);
        return out;
      }),
    watch: (filter, includeExisting) =>
      guard(async () => {
        const it = await kv.watch({ key: filter, include: includeExisting ? KvWatchInclude.LastValue : KvWatchInclude.UpdatesOnly });
        const watch: StoreWatch = {
          stop: () => it.stop(),
          async *[Symbol.asyncIterator]() {
            for await (const e of it) {
              const change: StoreChange = { key: e.key, value: e.operation === "PUT" ? e.value : undefined, revision: e.revision };
              yield change;
            }
          },
        };
        return watch;
      }),
  };
}
