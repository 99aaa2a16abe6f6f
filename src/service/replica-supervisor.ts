import { nuid } from "@nats-io/transport-node";
import type { ProcExitEvent, ProcInfo, ProcSpec } from "../agent/index.ts";
import type { ActorStats } from "../actor/index.ts";
import type { BusConnection, Inbound, Subscription } from "../connection/index.ts";
import { InvalidOptionsError, PlacementError, ReplicaCrashedError, type ServiceUnavailableError } from "../errors/index.ts";
import { pingInstance } from "../registry/index.ts";
import type { Subjects } from "../subjects/index.ts";
import { watchCapacity, type CapacityWatch } from "./capacity-watch.ts";
import { closedError, notifyChange, type ControllerState } from "./controller-state.ts";
import type { Launcher } from "./launchers.ts";
import type { ModuleRef } from "./module-ref.ts";
import type { ResolvedServiceOptions } from "./options.ts";
import { placeReplica, type ReplicaPlacement } from "./placement.ts";
import { errText, type Replica } from "./replica-state.ts";
import { createHistory, decideRestart, isPlacementFailure, noteDeath, recentRestarts, recordRestart, type RestartHistory, type RestartPolicy } from "./restart-budget.ts";
import type { LaunchContext, ReplicaRef } from "./types.ts";

/** The statics of an Actor class the controller uses (the hooks may be overridden). */
export interface LaunchableClass {
  readonly name: string;
  launch(ctx: LaunchContext): Promise<void>;
  shutdown(target: unknown): Promise<void>;
}

/**
 * Keeps a service's replicas running: starts them (through the class's launch hook), learns of
 * deaths from exit events and heartbeats, fails the calls a dead replica held, and restarts it
 * with backoff within its restart budget (restart-budget.ts). A replica with no host to run on
 * waits, failed, until an agent with room appears (capacity-watch.ts), at no cost to its budget.
 */
export interface ReplicaSupervisor {
  /** Starts one incarnation of `r`, placed by `placement` or now; it is healthy once this resolves. */
  startReplica(r: Replica, placement: ReplicaPlacement | undefined, attempt: number): Promise<void>;
  /** A process of ours exited: a healthy replica died, or one being started failed. */
  onProcExit(ev: ProcExitEvent): void;
  /**
   * A call found nobody on a replica's subject: calls avoid the replica until a heartbeat tells
   * whether it died. Returns the call's error.
   */
  unreachable(r: Replica, generation: number, err: ServiceUnavailableError): Error;
  /** Hears the exit events agents send about our processes. */
  listen(): Subscription;
  startHeartbeats(): void;
  stopHeartbeats(): void;
  /** Stops every replica (the class's shutdown hook, or its processes) and the launcher. */
  stopAll(): Promise<void>;
}

export interface ReplicaSupervisorParams {
  state: ControllerState;
  conn: BusConnection;
  subjects: Subjects;
  namespace: string;
  launcher: Launcher;
  cls: LaunchableClass;
  ref: ModuleRef;
  options: ResolvedServiceOptions;
  /** The service's constructor arguments (what ctx.spawn() passes when given none). */
  args: unknown[];
  controlTimeoutMs: number;
  /**
   * A heartbeat sent at `sentAt` (performance.now()) got no answer in its time: the process is on
   * NATS but not answering (outlier ejection's signal).
   */
  onStall?: (r: Replica, generation: number, sentAt: number) => void;
  /** Every process of a replica answered a heartbeat sent at `sentAt` (performance.now() ms). */
  onHeard?: (r: Replica, generation: number, sentAt: number) => void;
}

const REPLICA_REF = Symbol.for("actorbus.replicaRef");

export function isReplicaRef(v: unknown): v is ReplicaRef {
  return typeof v === "object" && v !== null && (v as Record<symbol, unknown>)[REPLICA_REF] === true;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export function createReplicaSupervisor(p: ReplicaSupervisorParams): ReplicaSupervisor {
  const { state: s, conn, subjects, launcher, cls, options: o, controlTimeoutMs } = p;
  const { name, replicas } = s;
  const req = { procs: o.procs, hosts: o.hosts, withGpus: o.withGpus };
  const procOwner = new Map<string, Replica>();
  let healthTimer: NodeJS.Timeout | undefined;
  const policy: RestartPolicy = {
    maxRestarts: o.maxRestarts,
    restartWindowMs: o.restartWindowMs,
    restartBackoffMs: o.restartBackoffMs,
    maxBackoffMs: o.maxBackoffMs,
    stableMs: o.stableMs,
  };
  const histories = new Map<Replica, RestartHistory>();
  const historyOf = (r: Replica) => {
    let h = histories.get(r);
    if (!h) histories.set(r, (h = createHistory()));
    return h;
  };
  /** Replicas that found no host: placed again when capacity appears. */
  const unplaced = new Set<Replica>();
  let capacityWatch: CapacityWatch | undefined;

  const crashError = (r: Replica, reason: string) =>
    new ReplicaCrashedError(`replica ${r.index} of "${name}" crashed (${reason}); the call may or may not have run`, {
      details: { service: name, replica: r.index, reason },
    });

  const stopProcs = async (procs: ProcInfo[], graceMs: number) => {
    const byHost = new Map<string, string[]>();
    for (const pr of procs) {
      let ids = byHost.get(pr.hostId);
      if (!ids) byHost.set(pr.hostId, (ids = []));
      ids.push(pr.procId);
    }
    await Promise.all([...byHost].map(([hostId, ids]) => launcher.stop(hostId, ids, graceMs).catch(() => {})));
  };

  const replicaFailed = (r: Replica, generation: number, reason: string) => {
    if (r.generation !== generation || r.state !== "healthy") return;
    r.generation++;
    r.served = undefined;
    r.suspect = false;
    r.missed = 0;
    r.ejected = false;
    r.reason = "";
    r.state = "recovering";
    r.lastError = reason;
    r.sessions = 0; // their state died with the process: sessions learn it on their next call
    const err = crashError(r, reason);
    for (const f of [...r.inflight]) f.fail(err);
    const survivors = r.procs;
    r.procs = [];
    r.subjects = [];
    void stopProcs(survivors, 0);
    noteDeath(policy, historyOf(r), Date.now() - r.healthySince);
    notifyChange(s);
    void restartLoop(r);
  };

  const restartLoop = async (r: Replica) => {
    while (s.state === "running") {
      const h = historyOf(r);
      const decision = decideRestart(policy, h, Date.now());
      if (decision.kind === "give-up") {
        r.state = "failed";
        r.reason = `${decision.reason}; last: ${r.lastError}`;
        notifyChange(s);
        return;
      }
      await sleep(decision.delayMs);
      if (s.state !== "running") return;
      try {
        await startReplica(r, undefined, r.totalRestarts + 1, () => countRestart(r));
        return;
      } catch (err) {
        if (s.state !== "running") return;
        if (isPlacementFailure(err)) return waitForCapacity(r, err);
        r.state = "recovering";
        r.lastError = `restart failed: ${errText(err)}`;
      }
    }
  };

  /** A restart attempt found a host: it counts against the budget, whatever happens next. */
  const countRestart = (r: Replica) => {
    const h = historyOf(r);
    recordRestart(h, Date.now());
    r.restarts = recentRestarts(policy, h, Date.now());
    r.totalRestarts++;
  };

  // --- replicas without a host ---------------------------------------------------------------

  const waitForCapacity = (r: Replica, err: unknown) => {
    r.state = "failed";
    r.reason = `waiting for capacity: ${(err as Error)?.message ?? String(err)}`;
    unplaced.add(r);
    notifyChange(s);
    // Agents announce themselves in the registry bucket; the local launcher never lacks room.
    capacityWatch ??= watchCapacity({ conn, subjects, onCapacity: () => void placeWaiting(), backstopMs: Math.max(1_000, o.maxBackoffMs) });
  };

  let placing = false;
  let placeAgain = false;
  /** One round of placing the replicas that wait for capacity, one after another (each takes room). */
  const placeWaiting = async () => {
    if (placing) {
      placeAgain = true;
      return;
    }
    placing = true;
    try {
      do {
        placeAgain = false;
        for (const r of [...unplaced]) {
          if (s.state !== "running" || r.state !== "failed") {
            unplaced.delete(r);
            continue;
          }
          let where: ReplicaPlacement;
          try {
            where = placeReplica(await offered(), req, `replica ${r.index} of "${name}"`, r.hosts);
          } catch (err) {
            r.reason = `waiting for capacity: ${(err as Error)?.message ?? String(err)}`;
            continue; // still no room: the next agent to appear calls again
          }
          unplaced.delete(r);
          r.state = "recovering";
          r.reason = "";
          notifyChange(s);
          try {
            await startReplica(r, where, r.totalRestarts + 1, () => countRestart(r));
          } catch (err) {
            if (s.state !== "running") return;
            if (isPlacementFailure(err)) {
              waitForCapacity(r, err);
              continue;
            }
            r.lastError = `restart failed: ${errText(err)}`;
            void restartLoop(r);
          }
        }
      } while (placeAgain && unplaced.size > 0 && s.state === "running");
    } finally {
      placing = false;
      if (unplaced.size === 0) {
        capacityWatch?.stop();
        capacityWatch = undefined;
      }
    }
  };

  /** What the hosts offer now; a registry that cannot say is no room, for now. */
  const offered = () =>
    launcher.capacity().catch((err: unknown) => {
      throw new PlacementError(`cannot learn the hosts' capacity (${errText(err)})`, { cause: err });
    });

  const onProcExit = (ev: ProcExitEvent) => {
    const r = procOwner.get(ev.procId);
    procOwner.delete(ev.procId);
    if (!r) return;
    const why = `process ${ev.pid} on ${ev.hostId} exited with ${ev.signal ?? `code ${ev.code}`}`;
    if (r.state === "healthy" && r.groupId === ev.groupId) replicaFailed(r, r.generation, why);
    else r.startFailure.set(ev.groupId, why);
  };

  /** `placed` runs once the replica has a host (a restart then counts against its budget). */
  const startReplica = async (r: Replica, placement: ReplicaPlacement | undefined, attempt: number, placed?: () => void) => {
    const where = placement ?? placeReplica(await offered(), req, `replica ${r.index} of "${name}"`, r.hosts);
    placed?.();
    let spawned: ProcInfo[] | undefined;
    let groupId = "";
    const ctx: LaunchContext = {
      service: name,
      namespace: p.namespace,
      replicaIndex: r.index,
      attempt,
      options: { ...o, services: undefined } as LaunchContext["options"],
      args: p.args,
      placement: where,
      async spawn(args = p.args) {
        if (groupId) throw new InvalidOptionsError(`${cls.name}.launch() called ctx.spawn() twice for one replica`);
        groupId = nuid.next();
        const specFor = (rank: number): ProcSpec => ({
          namespace: p.namespace,
          service: name,
          controllerId: s.controllerId,
          groupId,
          procId: `${groupId}-${rank}`,
          rank,
          size: o.procs,
          moduleUrl: p.ref.moduleUrl,
          exportName: p.ref.exportName,
          args: [...args],
          actor: { maxConcurrency: o.maxConcurrency, maxPending: o.maxPending, timeoutMs: o.timeoutMs, drainTimeoutMs: o.drainTimeoutMs },
          queueGroup: o.routing === "queue-group",
          gpu: o.withGpus,
          env: o.env,
          label: `${name}#${r.index}.${rank}`,
        });
        for (const h of where) for (const rank of h.ranks) procOwner.set(`${groupId}-${rank}`, r);
        const results = await Promise.allSettled(where.map((h) => launcher.spawn(h.hostId, h.ranks.map(specFor), o.startTimeoutMs)));
        const started = results.flatMap((x) => (x.status === "fulfilled" ? x.value : []));
        const failed = results.find((x) => x.status === "rejected") as PromiseRejectedResult | undefined;
        if (failed) {
          await stopProcs(started, 0);
          throw failed.reason;
        }
        spawned = started.sort((a, b) => a.rank - b.rank);
      },
    };
    try {
      await cls.launch(ctx);
      if (!spawned) throw new InvalidOptionsError(`${cls.name}.launch() returned without calling ctx.spawn(): the replica has no processes`);
      const died = r.startFailure.get(groupId);
      if (died) throw new ReplicaCrashedError(`replica ${r.index} of "${name}" died while starting: ${died}`);
      if (s.state !== "running") throw closedError(s);
    } catch (err) {
      if (spawned) await stopProcs(spawned, 0);
      r.startFailure.delete(groupId);
      throw err;
    }
    r.startFailure.clear();
    r.groupId = groupId;
    r.procs = spawned;
    r.subjects = spawned.map((x) => subjects.replica(groupId, x.rank));
    r.hosts = [...new Set(spawned.map((x) => x.hostId))];
    r.state = "healthy";
    r.reason = "";
    r.healthySince = Date.now();
    notifyChange(s);
  };

  // The backstop to exit events: a process that left NATS (its agent died with it, or the event
  // was lost) shows up as no-responders on its instance subject. Two misses in a row make a
  // death, so a process reconnecting to NATS is not killed for one unlucky ping.
  const probe = (r: Replica) => {
    if (r.state !== "healthy" || r.pinging) return;
    r.pinging = true;
    const gen = r.generation;
    const procs = r.procs;
    const sentAt = performance.now();
    // Rank 0 answers with its figures: the calls handles sent it straight count there only.
    const served = (st: ActorStats) => {
      if (r.generation === gen) r.served = { calls: st.calls, errors: st.errors, p50Ms: st.p50Ms, p99Ms: st.p99Ms };
    };
    Promise.all(procs.map((x, i) => pingInstance(conn, subjects, x.procId, Math.max(controlTimeoutMs, 2 * o.healthIntervalMs), i === 0 ? served : undefined)))
      .then((states) => {
        if (r.generation !== gen) return;
        const dead = states.findIndex((st) => st === "dead");
        if (dead < 0 && states.includes("unknown")) p.onStall?.(r, gen, sentAt);
        else if (dead < 0) p.onHeard?.(r, gen, sentAt);
        if (dead < 0) {
          r.missed = 0;
          if (r.suspect) {
            r.suspect = false;
            notifyChange(s);
          }
          return;
        }
        if (++r.missed >= 2) replicaFailed(r, gen, `process ${procs[dead]!.pid} on ${procs[dead]!.hostId} stopped answering heartbeats`);
        else if (r.suspect) setTimeout(() => probe(r), 250).unref();
      })
      .finally(() => (r.pinging = false));
  };
  const heartbeat = () => {
    for (const r of replicas) probe(r);
  };

  const unreachable = (r: Replica, gen: number, err: ServiceUnavailableError): Error => {
    // No responders on a replica's own subject: its process is gone (the exit event is on its
    // way) or reconnecting to NATS. Route around it until a heartbeat tells which.
    if (r.generation === gen && r.state === "healthy" && !r.suspect) {
      r.suspect = true;
      probe(r);
    }
    return crashError(r, `nobody listens on ${(err.details.subject as string) ?? "its subject"}: process gone or disconnected`);
  };

  const replicaRef = (r: Replica): ReplicaRef => {
    const procs = r.procs;
    return {
      [REPLICA_REF]: true,
      service: name,
      index: r.index,
      hosts: [...r.hosts],
      pids: procs.map((x) => x.pid),
      stop: (graceMs = o.drainTimeoutMs) => stopProcs(procs, graceMs),
    } as ReplicaRef;
  };

  return {
    startReplica,
    onProcExit,
    unreachable,
    listen: () =>
      conn.transport.subscribe(subjects.events(s.controllerId), (msg: Inbound) => {
        try {
          onProcExit(conn.codec.decode<ProcExitEvent>(msg.data));
        } catch {
          // not an event of ours
        }
      }),
    startHeartbeats() {
      healthTimer = setInterval(heartbeat, o.healthIntervalMs);
      healthTimer.unref();
    },
    stopHeartbeats: () => clearInterval(healthTimer),
    async stopAll() {
      capacityWatch?.stop();
      capacityWatch = undefined;
      unplaced.clear();
      await Promise.all(
        replicas.map(async (r) => {
          if (r.procs.length === 0) return;
          try {
            await cls.shutdown(replicaRef(r));
          } catch {
            await stopProcs(r.procs, 0);
          }
        }),
      );
      await launcher.close(o.drainTimeoutMs);
      for (const r of replicas) {
        r.state = "stopped";
        r.procs = [];
        r.subjects = [];
      }
    },
  };
}
