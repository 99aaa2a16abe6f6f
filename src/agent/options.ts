import { availableParallelism, hostname } from "node:os";
import { CONNECTION_CHECKS, loggerCheck, type BusConnection, type ConnectionOptions, type Logger } from "../connection/index.ts";
import { custom, defineOptions, durationMs, int, obj, type Resolved, type SpecFor } from "../options/index.ts";
import { validateName } from "../subjects/index.ts";
import { resolveAllowedRoots } from "./allowed-modules.ts";

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

const isStream = (v: unknown) => v !== null && typeof v === "object" && typeof (v as NodeJS.WritableStream).write === "function";

const AGENT_CHECKS = {
  ...CONNECTION_CHECKS,
  connection: obj<BusConnection>("pass the result of connectBus(), or leave it out to connect here", ["close", "onClose"]),
  namespace: (v: unknown) => validateName("namespace", v),
  hostId: (v: unknown) => validateName("host id", v),
  cpus: int({ min: 0, hint: "the number of replica processes this host takes" }),
  gpus: int({ min: 0, hint: "the number of GPUs this host offers (0 for none)" }),
  heartbeatMs: durationMs({ min: 50, hint: "the period of capacity and liveness writes" }),
  leaseCheckMs: durationMs({ min: 50, hint: "the period of controller liveness checks" }),
  leaseTimeoutMs: durationMs({ min: 0, hint: "how long a controller may be unreachable before its replicas are stopped" }),
  stopGraceMs: durationMs({ min: 0, hint: "how long replicas get between SIGTERM and SIGKILL on stop" }),
  // Each root is checked (exists, is a directory) by resolveAllowedRoots, which names the fix.
  allow: custom<string[]>(Array.isArray, 'an array of directories such as ["/srv/app"]'),
  logger: loggerCheck,
  output: custom<NonNullable<AgentOptions["output"]>>(
    (v) => v !== null && typeof v === "object" && isStream((v as Record<string, unknown>).stdout) && isStream((v as Record<string, unknown>).stderr),
    "an object with stdout and stderr streams",
    "such as { stdout: process.stdout, stderr: process.stderr }",
  ),
} satisfies SpecFor<AgentOptions>;

export const agentOptions = defineOptions(
  "agent options",
  AGENT_CHECKS,
  () => ({ namespace: "default", hostId: defaultHostId(), cpus: availableParallelism(), gpus: 0, heartbeatMs: 1_000, leaseCheckMs: 1_000, leaseTimeoutMs: 5_000, stopGraceMs: 3_000 }),
  { example: '{ hostId: "gpu-1", gpus: 8 }' },
);

export type ParsedAgentOptions = Resolved<typeof AGENT_CHECKS, ReturnType<typeof agentOptions.defaults>>;

export function resolveAgentOptions(o: AgentOptions): ResolvedAgentOptions & ParsedAgentOptions {
  const r = agentOptions.parse(o);
  return { ...r, allow: resolveAllowedRoots(r.allow) };
}
