import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { ActorBusError, CallTimeoutError, errorFromWire, ReplicaCrashedError } from "../errors/index.ts";
import { replicaNodeArgs, siblingPath } from "./node-args.ts";
import type { ProcConnection, ProcInfo, ProcMessage, ProcSpec, StartMessage } from "./protocol.ts";

/**
 * Starts and watches replica processes on one host: used by agents and by the caller's own
 * machine when no agent runs (the embedded default). A process is `node [this process's
 * loader flags] replica-main.js` with an IPC channel: the spec goes in as the first message, "ready" or
 * "failed" comes back, and the channel closing tells the process its spawner is gone.
 */
export interface Supervisor {
  readonly hostId: string;
  /** Starts one process; resolves once it serves, rejects if it fails or exits first. */
  start(spec: ProcSpec, gpus: number[], startTimeoutMs: number): Promise<ProcInfo>;
  /** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone. */
  stop(procId: string, graceMs: number): Promise<void>;
  stopAll(graceMs: number): Promise<void>;
  list(): ProcInfo[];
  has(procId: string): boolean;
}

export interface SupervisorParams {
  hostId: string;
  connection: ProcConnection;
  /** Every exit of a started process; `expected` when stop() asked for it. */
  onExit(info: ProcInfo, spec: ProcSpec, code: number | null, signal: string | null, expected: boolean): void;
  /** Where replica output goes, each line prefixed with its label (default: this process's streams). */
  output?: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };
}

export const REPLICA_ENTRY = siblingPath("../service/replica-main", import.meta.url);

// The process gets the spawner's credentials over IPC (StartMessage.connection.auth); in its
// environment they would show in /proc/<pid>/environ and leak to whatever it spawns in turn.
const SECRET_ENV = new Set(["NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_NKEY", "NATS_NKEY_SEED", "NATS_CREDS"]);
function withoutSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !SECRET_ENV.has(k)));
}

interface Running {
  child: ChildProcess;
  info: ProcInfo;
  spec: ProcSpec;
  stopping: boolean;
  exited: Promise<void>;
}

export function createSupervisor(p: SupervisorParams): Supervisor {
  const running = new Map<string, Running>();
  const out = p.output ?? { stdout: process.stdout, stderr: process.stderr };

  const pipeLines = (from: NodeJS.ReadableStream | null, to: NodeJS.WritableStream, prefix: string) => {
    if (!from) return;
    createInterface({ input: from, crlfDelay: Infinity }).on("line", (line) => {
      to.write(`${prefix} ${line}\n`);
    });
  };

  const start = (spec: ProcSpec, gpus: number[], startTimeoutMs: number): Promise<ProcInfo> => {
    const env: NodeJS.ProcessEnv = {
      ...withoutSecrets(process.env),
      ...spec.env,
      ACTORBUS_RANK: String(spec.rank),
      ACTORBUS_SIZE: String(spec.size),
      ACTORBUS_HOST_ID: p.hostId,
      ACTORBUS_REPLICA: spec.groupId,
    };
    // The host's own device ids (say 5 of 0,2,5,7), not positions: ids 0..n-1 would hand out
    // devices the operator kept from this host.
    if (spec.gpu) env.CUDA_VISIBLE_DEVICES = gpus.join(",");
    // The namespace and process id are on the command line so `ps` shows whose process it is.
    const child = spawn(process.execPath, [...replicaNodeArgs(), REPLICA_ENTRY, "--namespace", spec.namespace, "--proc", spec.procId], {
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      serialization: "advanced",
      env,
    });
    const label = `[${spec.label}@${p.hostId}]`;
    pipeLines(child.stdout, out.stdout, label);
    pipeLines(child.stderr, out.stderr, label);
    const info: ProcInfo = { procId: spec.procId, groupId: spec.groupId, rank: spec.rank, pid: child.pid ?? -1, hostId: p.hostId, gpus };
    let exitedResolve!: () => void;
    const entry: Running = { child, info, spec, stopping: false, exited: new Promise((r) => (exitedResolve = r)) };
    running.set(spec.procId, entry);

    return new Promise<ProcInfo>((resolve, reject) => {
      let settled = false;
      const settle = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          // A process that never became ready is not left behind.
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
          reject(err);
        } else resolve(info);
      };
      const timer = setTimeout(
        () => settle(new CallTimeoutError(`${spec.label} did not start within ${startTimeoutMs} ms on host ${p.hostId}; raise startTimeoutMs if construction is slow`, { details: { label: spec.label, hostId: p.hostId } })),
        startTimeoutMs,
      );
      child.on("message", (m: ProcMessage) => {
        if (m?.type === "ready") settle();
        else if (m?.type === "failed") settle(errorFromWire(m.error));
      });
      child.once("error", (e) => settle(new ActorBusError(`cannot start ${spec.label} on host ${p.hostId}: ${e.message}`, { cause: e })));
      child.once("exit", (code, signal) => {
        running.delete(spec.procId);
        exitedResolve();
        settle(new ReplicaCrashedError(`${spec.label} exited (${signal ?? `code ${code}`}) on host ${p.hostId} before it was ready`, { details: { label: spec.label, hostId: p.hostId, code, signal } }));
        p.onExit(info, spec, code, signal, entry.stopping);
      });
      const start: StartMessage = { type: "start", spec, connection: p.connection, hostId: p.hostId };
      child.send(start, (err) => {
        if (err) settle(new ActorBusError(`cannot send the spec to ${spec.label}: ${err.message}`, { cause: err }));
      });
    });
  };

  const stop = async (procId: string, graceMs: number) => {
    const r = running.get(procId);
    if (!r) return;
    r.stopping = true;
    const { child } = r;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(graceMs > 0 ? "SIGTERM" : "SIGKILL");
      if (graceMs > 0) {
        const t = setTimeout(() => child.kill("SIGKILL"), graceMs);
        await r.exited;
        clearTimeout(t);
        return;
      }
    }
    await r.exited;
  };

  return {
    hostId: p.hostId,
    start,
    stop,
    stopAll: async (graceMs) => void (await Promise.all([...running.keys()].map((id) => stop(id, graceMs)))),
    list: () => [...running.values()].map((r) => r.info),
    has: (procId) => running.has(procId),
  };
}
