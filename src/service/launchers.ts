import { unwrapReply } from "../reply/index.ts";
import { createSupervisor, defaultHostId, procConnectionFor, type ProcConnection, type ProcExitEvent, type ProcInfo, type ProcSpec, type HostRecord, type Supervisor } from "../agent/index.ts";
import type { BusConnection } from "../connection/index.ts";
import { PlacementError, ServiceUnavailableError } from "../errors/index.ts";
import { openKvStore } from "../registry/kv-store.ts";
import { decodeRecord } from "../registry/records.ts";
import type { Subjects } from "../subjects/index.ts";
import type { ResolvedServiceOptions } from "./options.ts";
import { placeService, type HostCapacity, type ReplicaPlacement } from "./placement.ts";

/**
 * Starts and stops replica processes for one service controller: through host agents, or as
 * child processes of the controller's own process (the embedded default when no agent runs).
 * Exits come back through `onExit` either way (agents publish them on subjects.events).
 */
export interface Launcher {
  readonly mode: "agents" | "local";
  capacity(): Promise<HostCapacity[]>;
  spawn(hostId: string, specs: ProcSpec[], startTimeoutMs: number): Promise<ProcInfo[]>;
  stop(hostId: string, procIds: string[], graceMs: number): Promise<void>;
  close(graceMs: number): Promise<void>;
}

export type ExitHandler = (ev: ProcExitEvent) => void;

export function createLocalLauncher(hostId: string, connection: ProcConnection, onExit: ExitHandler): Launcher {
  const sup: Supervisor = createSupervisor({
    hostId,
    connection,
    onExit: (info, _spec, code, signal) => onExit({ type: "exit", procId: info.procId, groupId: info.groupId, hostId, pid: info.pid, code, signal }),
  });
  return {
    mode: "local",
    // The caller's machine takes any number of processes (the OS time-shares) but offers no GPUs:
    // those are an agent's to hand out.
    capacity: async () => [{ hostId, freeCpus: Infinity, freeGpus: 0 }],
    spawn: (_h, specs, startTimeoutMs) =>
      Promise.allSettled(specs.map((s) => sup.start(s, [], startTimeoutMs))).then(async (rs) => {
        const failed = rs.find((r) => r.status === "rejected");
        if (!failed) return rs.map((r) => (r as PromiseFulfilledResult<ProcInfo>).value);
        await Promise.all(specs.map((s) => sup.stop(s.procId, 0)));
        throw (failed as PromiseRejectedResult).reason;
      }),
    stop: async (_h, procIds, graceMs) => void (await Promise.all(procIds.map((id) => sup.stop(id, graceMs)))),
    close: (graceMs) => sup.stopAll(graceMs),
  };
}

/** Live agents of the namespace with their current capacity (each one asked, not just read from KV). */
export async function liveAgents(conn: BusConnection, subjects: Subjects, timeoutMs = 2_000): Promise<HostRecord[]> {
  if (!conn.nc) return [];
  const store = await openKvStore(conn.nc, subjects.bucket, { replicas: "auto", clustered: conn.clustered });
  const keys = await store.keys(subjects.hostKeyFilter());
  const records = await Promise.all(
    keys.map(async (key) => {
      const e = await store.get(key);
      const kvRecord = e && decodeRecord<HostRecord>(e.value);
      if (!kvRecord?.hostId) return undefined;
      const askedAt = Date.now();
      try {
        return unwrapReply<HostRecord>(conn.codec, await conn.transport.request(subjects.agent(kvRecord.hostId), conn.codec.encode({ op: "ping" }), timeoutMs));
      } catch (err) {
        if (err instanceof ServiceUnavailableError) {
          // A key left by an agent that died: nobody else will remove it.
          if (e) await store.delete(key, e.revision).catch(() => {});
          return undefined;
        }
        // No answer, but the server still has its subscription: busy, or cut off from the
        // network before the server noticed (that takes its ping interval). A cut-off agent
        // cannot heartbeat either: if it missed two while we waited, do not place on it (a
        // spawn there would wait out its whole start timeout). Revisions, not clocks: the
        // agent's clock is another host's.
        const hb = Number(kvRecord.heartbeatMs) > 0 ? Number(kvRecord.heartbeatMs) : 1_000;
        if (Date.now() - askedAt >= 2 * hb) {
          const now = await store.get(key).then((x) => ({ entry: x }), () => undefined); // undefined: cannot tell
          if (now && (!now.entry || now.entry.revision === e!.revision)) return undefined;
        }
        return kvRecord; // busy, not gone
      }
    }),
  );
  return records.filter((r): r is HostRecord => r !== undefined).sort((a, b) => (a.hostId < b.hostId ? -1 : 1));
}

export function capacityOf(r: HostRecord): HostCapacity {
  return { hostId: r.hostId, freeCpus: Math.max(0, r.cpus - r.usedCpus), freeGpus: Math.max(0, r.gpus - r.usedGpus.length) };
}

export function createAgentLauncher(conn: BusConnection, subjects: Subjects, controlTimeoutMs: number): Launcher {
  const { codec, transport } = conn;
  const ask = async <T>(hostId: string, req: unknown, timeoutMs: number): Promise<T> =>
    unwrapReply<T>(codec, await transport.request(subjects.agent(hostId), codec.encode(req), timeoutMs));
  const placed = new Map<string, Set<string>>(); // hostId -> procIds we started there
  // Stops an agent did not confirm: it is gone (and its processes with it: they exit when their
  // agent does), or cut off from NATS with its processes still running. In the second case
  // nobody else would stop them once the link is back (the agent's lease sees this controller
  // alive), so the stop is sent again until the agent answers or this launcher closes.
  const unconfirmed = new Map<string, Set<string>>(); // hostId -> procIds
  let retryTimer: ReturnType<typeof setInterval> | undefined;
  let retrying = false;
  let closed = false;
  const retryStops = async () => {
    if (retrying) return;
    retrying = true;
    try {
      await Promise.all(
        [...unconfirmed].map(async ([hostId, ids]) => {
          const procIds = [...ids];
          try {
            await ask(hostId, { op: "stop", procIds, graceMs: 0 }, controlTimeoutMs);
          } catch {
            return; // still unreachable: next round
          }
          for (const id of procIds) ids.delete(id);
          if (ids.size === 0) unconfirmed.delete(hostId);
        }),
      );
    } finally {
      retrying = false;
      if (unconfirmed.size === 0 && retryTimer) {
        clearInterval(retryTimer);
        retryTimer = undefined;
      }
    }
  };
  const remember = (hostId: string, procIds: string[]) => {
    if (closed) return;
    let ids = unconfirmed.get(hostId);
    if (!ids) unconfirmed.set(hostId, (ids = new Set()));
    for (const id of procIds) ids.add(id);
    if (!retryTimer) {
      retryTimer = setInterval(() => void retryStops(), Math.max(250, controlTimeoutMs / 2));
      retryTimer.unref();
    }
  };
  return {
    mode: "agents",
    capacity: async () => (await liveAgents(conn, subjects, controlTimeoutMs)).map(capacityOf),
    async spawn(hostId, specs, startTimeoutMs) {
      let reply: Uint8Array;
      try {
        reply = await transport.request(subjects.agent(hostId), codec.encode({ op: "spawn", procs: specs, startTimeoutMs }), startTimeoutMs + controlTimeoutMs);
      } catch (err) {
        // The agent never answered (gone, or cut off): no host for the replica, not a crash of it.
        throw new PlacementError(`host ${hostId} did not take the replica: its agent did not answer (${(err as Error)?.message ?? String(err)}); it is gone or cut off from NATS`, {
          cause: err,
          details: { hostId },
        });
      }
      const procs = unwrapReply<ProcInfo[]>(codec, reply);
      let set = placed.get(hostId);
      if (!set) placed.set(hostId, (set = new Set()));
      for (const p of procs) set.add(p.procId);
      return procs;
    },
    async stop(hostId, procIds, graceMs) {
      for (const id of procIds) placed.get(hostId)?.delete(id);
      await ask(hostId, { op: "stop", procIds, graceMs }, graceMs + controlTimeoutMs).catch(() => remember(hostId, procIds));
    },
    async close(graceMs) {
      await Promise.all([...placed].map(([hostId, ids]) => (ids.size ? this.stop(hostId, [...ids], graceMs) : undefined)));
      placed.clear();
      // Once this controller is gone, agents stop what is left of it themselves (their lease).
      closed = true;
      if (retryTimer) clearInterval(retryTimer);
      retryTimer = undefined;
      unconfirmed.clear();
    },
  };
}

export interface LauncherChoice {
  launcher: Launcher;
  /** Where each replica goes first (placement fails here, before anything starts). */
  plan: ReplicaPlacement[];
}

/**
 * Agents when any runs in the namespace (or placement "agents" requires them), else child
 * processes of this one; and the placement of every replica against what they offer.
 */
export async function chooseLauncher(p: {
  conn: BusConnection;
  subjects: Subjects;
  options: ResolvedServiceOptions;
  service: string;
  controlTimeoutMs: number;
  onExit: ExitHandler;
}): Promise<LauncherChoice> {
  const { options: o, subjects } = p;
  const ns = subjects.namespace;
  const req = { procs: o.procs, hosts: o.hosts, withGpus: o.withGpus };
  const agents = createAgentLauncher(p.conn, subjects, p.controlTimeoutMs);
  const offered = o.placement === "local" ? [] : await agents.capacity();
  if (offered.length > 0) return { launcher: agents, plan: placeService(offered, req, o.numReplicas) };
  if (o.placement === "agents") {
    throw new PlacementError(`cannot place ${p.service}: placement "agents" but no agent is running in namespace "${ns}"; start one with \`actorbus agent --namespace ${ns}\``, { details: { agents: 0 } });
  }
  if (o.withGpus) {
    throw new PlacementError(
      `cannot place ${p.service}: withGpus needs GPUs from an agent, and no agent is running in namespace "${ns}"; start one with \`actorbus agent --namespace ${ns} --gpus N\``,
      { details: { withGpus: true, agents: 0 } },
    );
  }
  if (o.hosts !== null && o.hosts > 1) {
    throw new PlacementError(
      `cannot place ${p.service}: hosts ${o.hosts} needs agents on ${o.hosts} hosts, and no agent is running in namespace "${ns}" (without agents, replicas run on this machine only)`,
      { details: { hosts: o.hosts, agents: 0 } },
    );
  }
  const hostId = defaultHostId();
  return {
    launcher: createLocalLauncher(hostId, procConnectionFor(p.conn, { servers: o.servers }), p.onExit),
    plan: placeService([{ hostId, freeCpus: Infinity, freeGpus: 0 }], req, o.numReplicas),
  };
}
