import { hostname } from "node:os";
import { encodeErr, encodeOk, respondSafely } from "../reply/index.ts";
import { bounded, brief, connectBus, connectionOptions, rateLimitedLogger, stderrLogger, type BusConnection, type Inbound, type Subscription } from "../connection/index.ts";
import { InvalidOptionsError, PlacementError, ServiceUnavailableError } from "../errors/index.ts";
import { openKvStore } from "../registry/kv-store.ts";
import { pingInstance } from "../registry/liveness.ts";
import { decodeRecord } from "../registry/records.ts";
import { subjectsFor } from "../subjects/index.ts";
import { resolveAgentOptions, type AgentOptions } from "./options.ts";
import { checkSpawnAllowed } from "./allowed-modules.ts";
import { procConnectionFor } from "./proc-connection.ts";
import type { AgentRequest, HostRecord, ProcExitEvent, ProcInfo, ProcSpec } from "./protocol.ts";
import { parseAgentRequest } from "./requests.ts";
import { sinkOf } from "../metrics/index.ts";
import { watchAgent } from "./metrics.ts";
import { createSupervisor } from "./supervisor.ts";

/**
 * A host daemon (Ray's raylet, Monarch's host mesh): advertises capacity in KV, starts replica
 * processes on request, reports their exits to the controller that asked for them, and stops
 * the processes of controllers that died.
 */
export interface Agent extends AsyncDisposable {
  readonly hostId: string;
  readonly namespace: string;
  /** Real paths of the directories whose modules this agent starts (`--allow`). */
  readonly allowedRoots: readonly string[];
  /** The GPU device ids this agent hands out (`--gpus`, else its own CUDA_VISIBLE_DEVICES). */
  readonly gpuIds: readonly number[];
  record(): HostRecord;
  processes(): ProcInfo[];
  /** Stops every replica process, removes the host key, closes the connection if owned. Idempotent. */
  stop(): Promise<void>;
}

const enc = new TextEncoder();

export async function startAgent(options: AgentOptions = {}): Promise<Agent> {
  const o = resolveAgentOptions(options);
  const log = rateLimitedLogger(o.logger ?? stderrLogger());
  const subjects = subjectsFor(o.namespace);
  const conn = o.connection ?? (await connectBus({ ...connectionOptions.pick(o), name: o.name ?? `actorbus-agent-${o.hostId}` }));
  const ownsConnection = !o.connection;
  if (conn.backend !== "nats" || !conn.nc) {
    if (ownsConnection) await conn.close();
    throw new InvalidOptionsError("an agent needs a NATS connection: replicas run in other processes");
  }
  const { codec, transport } = conn;
  let store;
  try {
    store = await openKvStore(conn.nc, subjects.bucket, { replicas: "auto", clustered: conn.clustered });
    const existing = await store.get(subjects.hostKey(o.hostId));
    const prev = existing && decodeRecord<HostRecord>(existing.value);
    if (prev && (await pingAgent(conn, subjects.agent(o.hostId)))) {
      throw new InvalidOptionsError(
        `host id "${o.hostId}" is already served by a running agent (pid ${prev.pid} on ${prev.hostname}) in namespace "${o.namespace}"; give each agent its own --host-id`,
        { details: { hostId: o.hostId } },
      );
    }
  } catch (err) {
    if (ownsConnection) await conn.close();
    throw err;
  }
  const kv = store;

  const startedAt = new Date().toISOString();
  const usedGpus = new Set<number>(); // device ids, not positions in gpuIds
  const reservations = new Map<string, { gpus: number[] }>(); // by procId: slots held
  const byController = new Map<string, Set<string>>(); // controllerId -> procIds
  let stopped = false;
  const exits = { expected: 0, unexpected: 0 };

  const release = (procId: string) => {
    const r = reservations.get(procId);
    if (!r) return;
    reservations.delete(procId);
    for (const g of r.gpus) usedGpus.delete(g);
  };

  const record = (): HostRecord => ({
    hostId: o.hostId,
    hostname: hostname(),
    pid: process.pid,
    cpus: o.cpus,
    gpus: o.gpus,
    usedCpus: reservations.size,
    usedGpus: [...usedGpus].sort((a, b) => a - b),
    processes: supervisor.list().length,
    startedAt,
    heartbeatAt: new Date().toISOString(),
    heartbeatMs: o.heartbeatMs,
  });

  const supervisor = createSupervisor({
    hostId: o.hostId,
    connection: procConnectionFor(conn, connectionOptions.pick(o)),
    output: o.output,
    onExit(info, spec, code, signal, expected) {
      if (expected) exits.expected++;
      else exits.unexpected++;
      release(info.procId);
      byController.get(spec.controllerId)?.delete(info.procId);
      const ev: ProcExitEvent = { type: "exit", procId: info.procId, groupId: info.groupId, hostId: o.hostId, pid: info.pid, code, signal };
      // The controller learns of the death at once (its heartbeat is only the backstop).
      transport.publish(subjects.events(spec.controllerId), codec.encode(ev));
      void heartbeat();
    },
  });

  const spawnAll = async (specs: ProcSpec[], startTimeoutMs: number): Promise<ProcInfo[]> => {
    for (const s of specs) checkSpawnAllowed(s, o.allow, o.hostId);
    const free = o.cpus - reservations.size;
    const gpusNeeded = specs.filter((s) => s.gpu).length;
    // In the offered order, so a released device is the next one handed out again.
    const freeGpus = o.gpuIds.filter((g) => !usedGpus.has(g));
    if (specs.length > free || gpusNeeded > freeGpus.length) {
      throw new PlacementError(
        `host ${o.hostId} cannot take ${specs.length} process(es) needing ${gpusNeeded} GPU(s): ${free} of ${o.cpus} process slots and ${freeGpus.length} of ${o.gpus} GPUs free`,
        { details: { hostId: o.hostId, freeCpus: free, freeGpus: freeGpus.length, needCpus: specs.length, needGpus: gpusNeeded } },
      );
    }
    const assigned = specs.map((s) => {
      const gpus = s.gpu ? [freeGpus.shift()!] : [];
      for (const g of gpus) usedGpus.add(g);
      reservations.set(s.procId, { gpus });
      let set = byController.get(s.controllerId);
      if (!set) byController.set(s.controllerId, (set = new Set()));
      set.add(s.procId);
      return { spec: s, gpus };
    });
    const results = await Promise.allSettled(assigned.map(({ spec, gpus }) => supervisor.start(spec, gpus, startTimeoutMs)));
    const failed = results.find((r) => r.status === "rejected");
    if (failed) {
      await Promise.all(specs.map((s) => supervisor.stop(s.procId, 0)));
      for (const s of specs) release(s.procId);
      throw (failed as PromiseRejectedResult).reason;
    }
    void heartbeat();
    return results.map((r) => (r as PromiseFulfilledResult<ProcInfo>).value);
  };

  const subject = subjects.agent(o.hostId);
  const send = (msg: Inbound, bytes: Uint8Array) => {
    const problem = respondSafely(msg, bytes, codec, transport.maxPayload);
    if (problem) log.warn("agent reply not sent as is", { hostId: o.hostId, subject, reason: problem });
  };

  const onRequest = (msg: Inbound) => {
    if (!msg.reply) {
      log.warn("agent request without reply subject dropped", { hostId: o.hostId, subject, bytes: msg.data.length });
      return;
    }
    let req: AgentRequest;
    try {
      req = parseAgentRequest(codec.decode(msg.data));
    } catch (err) {
      log.warn("malformed agent request", { hostId: o.hostId, subject, bytes: msg.data.length, reason: brief(err) });
      send(msg, encodeErr(codec, err));
      return;
    }
    const answer = (p: Promise<unknown>) =>
      p.then(
        (v) => send(msg, encodeOk(codec, v)),
        (err) => send(msg, encodeErr(codec, err)),
      );
    switch (req.op) {
      case "ping":
        return void answer(Promise.resolve(record()));
      case "list":
        return void answer(Promise.resolve(supervisor.list()));
      case "spawn":
        if (stopped) return void answer(Promise.reject(new PlacementError(`agent ${o.hostId} is stopping`)));
        return void answer(spawnAll(req.procs, req.startTimeoutMs));
      case "stop":
        return void answer(Promise.all(req.procIds.map((id) => supervisor.stop(id, req.graceMs))).then(() => true));
    }
  };

  const heartbeat = async () => {
    if (stopped) return;
    await kv.put(subjects.hostKey(o.hostId), enc.encode(JSON.stringify(record()))).catch(() => {});
  };

  // Replicas whose controller is gone would never be called or stopped again. Gone means no
  // responders for leaseTimeoutMs in a row: a controller reconnecting to NATS is not gone.
  const unreachableSince = new Map<string, number>();
  const checkLeases = async () => {
    for (const [controllerId, procIds] of byController) {
      if (procIds.size === 0) {
        byController.delete(controllerId);
        unreachableSince.delete(controllerId);
        continue;
      }
      if ((await pingInstance(conn, subjects, controllerId, 2_000)) !== "dead") {
        unreachableSince.delete(controllerId);
        continue;
      }
      const since = unreachableSince.get(controllerId) ?? Date.now();
      unreachableSince.set(controllerId, since);
      if (Date.now() - since >= o.leaseTimeoutMs) {
        await Promise.all([...procIds].map((id) => supervisor.stop(id, 0)));
        byController.delete(controllerId);
        unreachableSince.delete(controllerId);
      }
    }
  };

  const sub: Subscription = transport.subscribe(subject, onRequest, {
    // A handler that throws is a bug of ours: the requester still hears, and the agent keeps serving.
    onError: (msg, err) => {
      log.warn("agent request handler failed", { hostId: o.hostId, subject, reason: brief(err) });
      send(msg, encodeErr(codec, err));
    },
  });
  await transport.flush();
  const unwatch = watchAgent(sinkOf(o.metrics), o.namespace, o.hostId, { record, exits });
  await heartbeat();
  const hbTimer = setInterval(() => void heartbeat(), o.heartbeatMs);
  let leaseRunning = false;
  const leaseTimer = setInterval(() => {
    if (leaseRunning) return;
    leaseRunning = true;
    checkLeases().finally(() => (leaseRunning = false));
  }, o.leaseCheckMs);

  let stopping: Promise<void> | undefined;
  const agent: Agent = {
    hostId: o.hostId,
    namespace: o.namespace,
    allowedRoots: o.allow,
    gpuIds: Object.freeze([...o.gpuIds]),
    record,
    processes: () => supervisor.list(),
    stop() {
      stopping ??= (async () => {
        clearInterval(hbTimer);
        clearInterval(leaseTimer);
        sub.unsubscribe();
        unwatch();
        await supervisor.stopAll(o.stopGraceMs);
        stopped = true;
        // Cut off from NATS, these would wait for a reconnect: the host key then expires by heartbeat age.
        await bounded(kv.delete(subjects.hostKey(o.hostId)).then(() => transport.flush()), o.stopGraceMs);
        log.flush();
        if (ownsConnection) await conn.close();
      })();
      return stopping;
    },
    [Symbol.asyncDispose]() {
      return this.stop();
    },
  };
  return agent;
}

/** Whether an agent answers on its subject; a slow one counts as alive (only no-responders is proof of absence). */
async function pingAgent(conn: BusConnection, subject: string): Promise<boolean> {
  try {
    await conn.transport.request(subject, conn.codec.encode({ op: "ping" }), 2_000);
    return true;
  } catch (err) {
    return !(err instanceof ServiceUnavailableError);
  }
}
