import type { InstanceInfo } from "../actor/index.ts";
import { unwrapReply } from "../actor/index.ts";
import type { BusConnection } from "../connection/index.ts";
import { ServiceUnavailableError } from "../errors/index.ts";
import type { Subjects } from "../subjects/index.ts";

export type Liveness = "alive" | "dead" | "unknown";

/**
 * Asks one instance whether it is there. No responders means the process is gone (NATS knows
 * at once); a timeout means it is busy or slow, which is not the same as dead.
 */
export async function pingInstance(conn: BusConnection, subjects: Subjects, instanceId: string, timeoutMs: number): Promise<Liveness> {
  try {
    unwrapReply<InstanceInfo>(conn.codec, await conn.transport.request(subjects.instance(instanceId), conn.codec.encode({ op: "ping" }), timeoutMs));
    return "alive";
  } catch (err) {
    return err instanceof ServiceUnavailableError ? "dead" : "unknown";
  }
}
