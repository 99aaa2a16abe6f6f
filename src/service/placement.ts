import { PlacementError } from "../errors/index.ts";

/** What placement sees of one host: free process slots and GPUs (Infinity slots: the embedded host). */
export interface HostCapacity {
  hostId: string;
  freeCpus: number;
  freeGpus: number;
}

export interface PlacementRequest {
  procs: number;
  hosts: number | null;
  withGpus: boolean;
}

/** Where one replica's ranks run: hosts in rank order. */
export type ReplicaPlacement = { hostId: string; ranks: number[] }[];

const describeHosts = (hosts: HostCapacity[]) =>
  hosts.length === 0
    ? "no hosts"
    : hosts.map((h) => `${h.hostId}: ${h.freeCpus === Infinity ? "unlimited" : h.freeCpus} process slots, ${h.freeGpus} GPUs free`).join("; ");

/**
 * Places one replica and deducts what it takes from `hosts`. Replicas spread: the host with the
 * most free slots wins (hosts in `prefer` first, so a restart returns to where it ran).
 */
export function placeReplica(hosts: HostCapacity[], req: PlacementRequest, what: string, prefer: string[] = [], shown: HostCapacity[] = hosts): ReplicaPlacement {
  const gpuPer = req.withGpus ? 1 : 0;
  const fits = (h: HostCapacity, n: number) => h.freeCpus >= n && h.freeGpus >= n * gpuPer;
  const order = [...hosts].sort((a, b) => {
    const pa = prefer.includes(a.hostId) ? 0 : 1;
    const pb = prefer.includes(b.hostId) ? 0 : 1;
    if (pa !== pb) return pa - pb;
    const fa = req.withGpus ? a.freeGpus : a.freeCpus;
    const fb = req.withGpus ? b.freeGpus : b.freeCpus;
    if (fa !== fb) return fb - fa;
    return a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0;
  });
  let chosen: { host: HostCapacity; n: number }[] | undefined;
  let reason = "";
  if (req.hosts !== null) {
    const per = req.procs / req.hosts;
    const ok = order.filter((h) => fits(h, per));
    if (ok.length >= req.hosts) chosen = ok.slice(0, req.hosts).map((host) => ({ host, n: per }));
    else reason = `needs ${req.hosts} hosts with ${per} free process slot(s)${gpuPer ? ` and ${per} free GPU(s)` : ""} each, ${ok.length} qualify`;
  } else {
    const one = order.find((h) => fits(h, req.procs));
    if (one) chosen = [{ host: one, n: req.procs }];
    else {
      // No single host fits: as few hosts as needed, biggest first.
      const acc: { host: HostCapacity; n: number }[] = [];
      let left = req.procs;
      for (const h of order) {
        const n = Math.min(left, gpuPer ? Math.min(h.freeCpus, h.freeGpus) : h.freeCpus);
        if (n <= 0) continue;
        acc.push({ host: h, n });
        left -= n;
        if (left === 0) break;
      }
      if (left === 0) chosen = acc;
      else {
        const slots = hosts.reduce((s, h) => s + h.freeCpus, 0);
        const gpus = hosts.reduce((s, h) => s + h.freeGpus, 0);
        reason = gpuPer && gpus < req.procs
          ? `needs ${req.procs} GPU(s) (withGpus: one per process), ${gpus} free`
          : `needs ${req.procs} process slot(s)${gpuPer ? " with a GPU each" : ""}, ${gpuPer ? Math.min(slots, gpus) : slots} free`;
      }
    }
  }
  if (!chosen) {
    throw new PlacementError(
      `cannot place ${what} (procs ${req.procs}, hosts ${req.hosts ?? "any"}${req.withGpus ? ", withGpus" : ""}): ${reason}; ${shown === hosts ? "" : "before placement "}${describeHosts(shown)}. ` +
        `Start more agents (actorbus agent --host-id ID --cpus N --gpus N) or ask for fewer replicas, processes or GPUs`,
      { details: { procs: req.procs, hosts: req.hosts, withGpus: req.withGpus, available: shown.map((h) => ({ ...h, freeCpus: h.freeCpus === Infinity ? -1 : h.freeCpus })) } },
    );
  }
  let rank = 0;
  return chosen.map(({ host, n }) => {
    host.freeCpus -= n;
    host.freeGpus -= n * gpuPer;
    const ranks = Array.from({ length: n }, () => rank++);
    return { hostId: host.hostId, ranks };
  });
}

/** Places every replica, or throws PlacementError naming what is missing before anything starts. */
export function placeService(hosts: HostCapacity[], req: PlacementRequest, numReplicas: number): ReplicaPlacement[] {
  const pool = hosts.map((h) => ({ ...h }));
  const out: ReplicaPlacement[] = [];
  // The message lists what the hosts offered before any replica was placed.
  for (let i = 0; i < numReplicas; i++) out.push(placeReplica(pool, req, `replica ${i + 1} of ${numReplicas}`, [], hosts));
  return out;
}
