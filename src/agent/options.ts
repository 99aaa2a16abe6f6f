import { availableParallelism, hostname } from "node:os";
import { checkInt } from "../actor/index.ts";
import type { BusConnection, ConnectionOptions, Logger } from "../connection/index.ts";
import { InvalidOptionsError } from "../errors/index.ts";
import { validateName } from "../subjects/index.ts";
import { resolveAllowedRoots } from "./allowed-modules.ts";

function checkAllow(allow: unknown): string[] | undefined {
  if (allow === undefined) return undefined;
  if (!Array.isArray(allow)) throw new InvalidOptionsError(`agent option allow must be an array of directories such as ["/srv/app"] (got ${JSON.stringify(allow)})`);
  return allow as string[];
}

export interface AgentOptions extends ConnectionOptions {
  /** Reuse a connection (left open by stop()). */
  connection?: BusConnection;
  /** The namespace whose services this agent hosts (default "default"). */
  namespace?: string;
  /** This host's name in placement and status; distinct per agent (default: the hostname). */
  hostId?: string;
  /** Replica processes this host takes (default: the number of cores). */
  cpus?: number;
  /** GPUs this host offers to `withGpus` replicas, as indices 0..gpus-1 (default 0). */
  gpus?: number;
  /** How often capacity and liveness are written to KV key host.<hostId>. */
  heartbeatMs?: number;
  /** How often the agent checks that the controllers of its replicas are alive (orphans are stopped). */
  leaseCheckMs?: number;
  /** How long a controller must stay unreachable before its replicas here are stopped (outlasts a reconnect). */
  leaseTimeoutMs?: number;
  /** How long stop() lets replica processes exit after SIGTERM before SIGKILL. */
  stopGraceMs?: number;
  /**
   * Directories whose modules this agent may start as replicas (`--allow`; default: the working
   * directory). A spawn request for a module anywhere else is refused with ModuleNotAllowedError.
   */
  allow?: string[];
  /** Where malformed requests on the agent's subject are reported, at most 10 lines per 10 s plus a summary (default: stderr). */
  logger?: Logger;
  /** Where replica output goes (default: this process's stdout/stderr). */
  output?: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };
}

export interface ResolvedAgentOptions {
  namespace: string;
  hostId: string;
  cpus: number;
  gpus: number;
  heartbeatMs: number;
  leaseCheckMs: number;
  leaseTimeoutMs: number;
  stopGraceMs: number;
  /** Real paths of the allowed roots. */
  allow: string[];
}

export function defaultHostId(): string {
  return hostname().replace(/[^A-Za-z0-9_-]/g, "_") || "host";
}

export function resolveAgentOptions(o: AgentOptions): ResolvedAgentOptions {
  if (typeof o !== "object" || o === null) throw new InvalidOptionsError("agent options must be an object such as { hostId: \"gpu-1\", gpus: 8 }");
  const where = "agent options";
  const r: ResolvedAgentOptions = {
    namespace: validateName("namespace", o.namespace ?? "default"),
    hostId: validateName("host id", o.hostId ?? defaultHostId()),
    cpus: checkInt(where, "cpus", o.cpus ?? availableParallelism(), 0, "the number of replica processes this host takes"),
    gpus: checkInt(where, "gpus", o.gpus ?? 0, 0, "the number of GPUs this host offers (0 for none)"),
    heartbeatMs: checkInt(where, "heartbeatMs", o.heartbeatMs ?? 1_000, 50, "milliseconds between heartbeats"),
    leaseCheckMs: checkInt(where, "leaseCheckMs", o.leaseCheckMs ?? 1_000, 50, "milliseconds between controller liveness checks"),
    leaseTimeoutMs: checkInt(where, "leaseTimeoutMs", o.leaseTimeoutMs ?? 5_000, 0, "milliseconds a controller may be unreachable before its replicas are stopped"),
    stopGraceMs: checkInt(where, "stopGraceMs", o.stopGraceMs ?? 3_000, 0, "milliseconds before SIGKILL on stop"),
    allow: resolveAllowedRoots(checkAllow(o.allow)),
  };
  return r;
}
