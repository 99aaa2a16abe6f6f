import { unwrapReply } from "../reply/index.ts";
import type { ActorStats, InstanceInfo } from "../actor/index.ts";
import type { BusConnection } from "../connection/index.ts";
import type { Subjects } from "../subjects/index.ts";
import type { RecordReads } from "./record-reads.ts";
import type { ServiceStatus } from "./types.ts";

export interface StatusParams {
  conn: BusConnection;
  subjects: Subjects;
  records: RecordReads;
  /** Deadline of each instance's stats request. */
  controlTimeoutMs: number;
}

/** Every registered service's record with the live stats of each of its instances (`actorbus ls`). */
export async function readStatus(p: StatusParams): Promise<ServiceStatus[]> {
  const { conn, subjects } = p;
  const { codec, transport } = conn;
  const { readRecord, instanceIds, registeredNames } = p.records;
  const out: ServiceStatus[] = [];
  for (const name of await registeredNames()) {
    const found = await readRecord(name);
    if (!found) continue;
    const ids = new Set([found.record.owner.instanceId, ...(await instanceIds(name))]);
    const instances = await Promise.all(
      [...ids].map(async (id) => {
        try {
          const s = unwrapReply<InstanceInfo & { stats: ActorStats }>(codec, await transport.request(subjects.instance(id), codec.encode({ op: "stats" }), p.controlTimeoutMs));
          const { stats, ...info } = s;
          return { info: { instanceId: info.instanceId, service: info.service, hostname: info.hostname, pid: info.pid, hostId: info.hostId, startedAt: info.startedAt }, stats };
        } catch (err) {
          return { info: { ...found.record.owner, instanceId: id }, error: (err as Error).message };
        }
      }),
    );
    out.push({ record: found.record, instances });
  }
  return out;
}
