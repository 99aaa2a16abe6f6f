import type { ActorStats, InstanceInfo } from "../actor/index.ts";
import { unwrapReply } from "../reply/index.ts";
import type { BusConnection } from "../connection/index.ts";
import { ServiceUnavailableError } from "../errors/index.ts";
import type { Subjects } from "../subjects/index.ts";
import type { RecordReads } from "./record-reads.ts";
import type { ServiceRecord } from "./records.ts";
import type { RegistryStore } from "./store.ts";

export type Liveness = "alive" | "dead" | "unknown";

/**
 * Asks one instance whether it is there. No responders means the process is gone (NATS knows
 * at once); a timeout means it is busy or slow, which is not the same as dead.
 */
export async function pingInstance(
  conn: BusConnection,
  subjects: Subjects,
  instanceId: string,
  timeoutMs: number,
  /** Asks for the instance's figures instead of a bare ping, and hands them here. */
  onStats?: (stats: ActorStats) => void,
): Promise<Liveness> {
  try {
    const reply = unwrapReply<InstanceInfo & { stats?: ActorStats }>(conn.codec, await conn.transport.request(subjects.instance(instanceId), conn.codec.encode({ op: onStats ? "stats" : "ping" }), timeoutMs));
    if (onStats && reply && typeof reply.stats === "object" && reply.stats !== null) onStats(reply.stats);
    return "alive";
  } catch (err) {
    return err instanceof ServiceUnavailableError ? "dead" : "unknown";
  }
}

/** Whether registered services still have a process behind them (see isAlive). */
export interface ServiceLiveness {
  isAlive(name: string, record: ServiceRecord): Promise<boolean>;
  liveRecord(name: string): Promise<ServiceRecord | undefined>;
}

export interface ServiceLivenessParams {
  conn: BusConnection;
  store: RegistryStore;
  subjects: Subjects;
  records: RecordReads;
  /** Deadline of each liveness ping. */
  controlTimeoutMs: number;
  /** How long a service must stay silent before its registry entry is taken for stale. */
  staleAfterMs: number;
}

export function createServiceLiveness(p: ServiceLivenessParams): ServiceLiveness {
  const { conn, store, subjects } = p;
  const { readRecord, instanceIds } = p.records;

  /** One round of pings: the owner first, then every other registered instance. */
  const anyInstanceAnswers = async (name: string, record: ServiceRecord): Promise<{ alive: boolean; deadIds: string[] }> => {
    if ((await pingInstance(conn, subjects, record.owner.instanceId, p.controlTimeoutMs)) !== "dead") return { alive: true, deadIds: [] };
    const ids = (await instanceIds(name)).filter((id) => id !== record.owner.instanceId);
    const states = await Promise.all(ids.map((id) => pingInstance(conn, subjects, id, p.controlTimeoutMs)));
    return { alive: states.some((s) => s !== "dead"), deadIds: ids.filter((_, i) => states[i] === "dead") };
  };

  /**
   * A service is alive while its owner or any registered instance answers. Silence is only
   * believed when it lasts longer than a reconnect: right after a server restart or failover,
   * whoever reconnects first finds everyone else "gone". Dead instances' keys are removed on the
   * way, so the registry heals itself as it is read.
   */
  const isAlive = async (name: string, record: ServiceRecord): Promise<boolean> => {
    if ((await anyInstanceAnswers(name, record)).alive) return true;
    await new Promise((r) => setTimeout(r, p.staleAfterMs));
    const second = await anyInstanceAnswers(name, record);
    if (second.alive) return true;
    await Promise.all(second.deadIds.map((id) => store.delete(subjects.instanceKey(name, id))));
    return false;
  };

  /** The record if the service is alive; a dead one is deleted (only if unchanged since read). */
  const liveRecord = async (name: string): Promise<ServiceRecord | undefined> => {
    const found = await readRecord(name);
    if (!found) return undefined;
    if (await isAlive(name, found.record)) return found.record;
    await store.delete(subjects.serviceKey(name), found.revision);
    await store.delete(subjects.instanceKey(name, found.record.owner.instanceId));
    return undefined;
  };

  return { isAlive, liveRecord };
}
