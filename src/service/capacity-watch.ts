import type { HostRecord } from "../agent/index.ts";
import type { BusConnection } from "../connection/index.ts";
import { openKvStore } from "../registry/kv-store.ts";
import { decodeRecord } from "../registry/records.ts";
import type { StoreWatch } from "../registry/store.ts";
import type { Subjects } from "../subjects/index.ts";

/** Stops watching. */
export interface CapacityWatch {
  stop(): void;
}

export interface CapacityWatchParams {
  conn: BusConnection;
  subjects: Subjects;
  /** Capacity may have appeared: an agent with free process slots wrote its host key. */
  onCapacity(): void;
  /**
   * Also called this often whatever the watch says, and the period of re-opening a watch that
   * failed: JetStream may be without a leader exactly when agents come and go.
   */
  backstopMs: number;
}

/**
 * Tells a controller with replicas waiting for a host when one may have room: an agent started
 * (a new host id, or one back with the same --host-id) or wrote a heartbeat with free slots. It
 * watches the agents' host keys in the namespace's bucket, which every agent writes on start and
 * on every heartbeat, so a returning agent is seen within milliseconds of its start.
 */
export function watchCapacity(p: CapacityWatchParams): CapacityWatch {
  const { conn, subjects } = p;
  let stopped = false;
  let watch: StoreWatch | undefined;
  let retry: NodeJS.Timeout | undefined;

  const hasRoom = (value: Uint8Array): boolean => {
    const r = decodeRecord<HostRecord>(value);
    return r !== undefined && Number(r.cpus) - Number(r.usedCpus) > 0;
  };

  const run = async () => {
    if (stopped || !conn.nc) return;
    try {
      const store = await openKvStore(conn.nc, subjects.bucket, { replicas: "auto", clustered: conn.clustered });
      if (stopped) return;
      watch = await store.watch(subjects.hostKeyFilter(), false);
      if (stopped) return watch.stop();
      // Whatever changed while the watch was being set up.
      p.onCapacity();
      for await (const change of watch) {
        if (stopped) break;
        if (change.value && hasRoom(change.value)) p.onCapacity();
      }
    } catch {
      // No leader, lost quorum, a closed connection: the backstop keeps trying meanwhile.
    }
    watch = undefined;
    if (!stopped) {
      retry = setTimeout(() => void run(), p.backstopMs);
      retry.unref();
    }
  };

  const backstop = setInterval(() => !stopped && p.onCapacity(), p.backstopMs);
  backstop.unref();
  void run();

  return {
    stop() {
      stopped = true;
      clearInterval(backstop);
      clearTimeout(retry);
      watch?.stop();
    },
  };
}
