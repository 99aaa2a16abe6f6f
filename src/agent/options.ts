import { availableParallelism, hostname } from "node:os";
import { CONNECTION_CHECKS, loggerCheck, type BusConnection, type ConnectionOptions, type Logger } from "../connection/index.ts";
import { InvalidOptionsError } from "../errors/index.ts";
import type { Metrics } from "../metrics/index.ts";
import { custom, defineOptions, durationMs, fail, int, obj, type Check, type Resolved, type SpecFor } from "../options/index.ts";
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
  /**
   * GPUs this host offers to `withGpus` replicas (`--gpus`): a count, meaning the first n devices
   * this process may use (of its own CUDA_VISIBLE_DEVICES if set, else 0..n-1), or the device
   * ids themselves, `[0, 2, 5, 7]` or `"0,2,5,7"` (one device: `[3]` or `"3,"`; a bare `"3"` is
   * a count). A replica's CUDA_VISIBLE_DEVICES is the ids it was given. Default: the ids in this
   * process's CUDA_VISIBLE_DEVICES, else none. Only numeric ids: a CUDA_VISIBLE_DEVICES of
   * device UUIDs (GPU-..., MIG-...) is refused; pass the numeric ids with `gpus` instead.
   */
  gpus?: number | readonly number[] | string;
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
  /** Prometheus metrics (createMetrics()): the agent's slots, processes and their exits. */
  metrics?: Metrics;
  /** Where replica output goes (default: this process's stdout/stderr). */
  output?: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };
}

export interface ResolvedAgentOptions {
  namespace: string;
  hostId: string;
  cpus: number;
  /** How many GPUs this host offers. */
  gpus: number;
  /** Their device ids, in the order they are handed out. */
  gpuIds: number[];
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

const GPUS_EXPECTED = 'a count such as 4, or device ids such as "0,2,5,7" or [0, 2, 5, 7]';
const GPUS_HINT = 'one device by id: "3," or [3]';

const gpuCount = int({ min: 0, max: 1024, hint: "the number of GPUs this host offers (0 for none)" });

/** `gpus` as given: a count, or the ids (whole numbers >= 0, each once: a repeat is a typo). */
const gpusCheck: Check<number | number[]> = (v, key, where) => {
  if (typeof v === "number") return gpuCount(v, key, where);
  let ids: unknown[] | undefined;
  if (Array.isArray(v)) ids = v;
  else if (typeof v === "string") {
    const t = v.trim();
    if (/^\d+$/.test(t)) return gpuCount(Number(t), key, where);
    if (t.includes(",")) {
      ids = t.split(",").map((x) => x.trim());
      if (ids.at(-1) === "" && ids.length > 1) ids.pop();
      ids = ids.map((x) => (/^\d+$/.test(x as string) ? Number(x) : x));
    }
  }
  if (!ids) throw fail(where, key, GPUS_EXPECTED, v, GPUS_HINT);
  const seen = new Set<number>();
  for (const id of ids) {
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
      const uuid = typeof id === "string" && /^(GPU|MIG)-/i.test(id);
      throw fail(where, key, GPUS_EXPECTED, v, uuid ? "device UUIDs are not supported; pass the numeric ids (nvidia-smi -L lists them)" : `${JSON.stringify(id)} is not a device id (a whole number >= 0)`);
    }
    if (seen.has(id)) throw fail(where, key, GPUS_EXPECTED, v, `device ${id} is listed twice`);
    seen.add(id);
  }
  return [...seen];
};

/**
 * The device ids in a CUDA_VISIBLE_DEVICES value, read as CUDA reads it: the list ends at the
 * first negative entry ("-1" is the usual way to hide every GPU); empty means not set (as
 * TorchForge's provisioner); an id listed twice counts once (as TorchForge's provisioner).
 */
export function cudaVisibleDevices(value: string | undefined): number[] | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  const ids: number[] = [];
  for (const raw of value.split(",")) {
    const x = raw.trim();
    if (/^-\d+$/.test(x)) break;
    if (!/^\d+$/.test(x)) {
      throw new InvalidOptionsError(
        `agent options: this process's CUDA_VISIBLE_DEVICES (${JSON.stringify(value)}) lists ${JSON.stringify(x)}, not a numeric device id; ` +
          `the agent hands out numeric ids only: pass gpus (--gpus) with the ids to offer, such as --gpus 0,2 (nvidia-smi -L lists them), or --gpus 0 for none`,
        { details: { option: "gpus", env: "CUDA_VISIBLE_DEVICES" } },
      );
    }
    const id = Number(x);
    if (!ids.includes(id)) ids.push(id);
  }
  return ids;
}

/** The devices this agent offers: the ids given, else the first n it may use, else its own CUDA_VISIBLE_DEVICES. */
export function resolveGpuIds(gpus: number | number[] | undefined, env: NodeJS.ProcessEnv = process.env): number[] {
  if (Array.isArray(gpus)) return gpus;
  const visible = cudaVisibleDevices(env.CUDA_VISIBLE_DEVICES);
  if (gpus === undefined) return visible ?? [];
  if (!visible) return [...Array(gpus).keys()];
  if (gpus > visible.length) {
    throw new InvalidOptionsError(
      `agent options: gpus is ${gpus}, but this process's CUDA_VISIBLE_DEVICES exposes ${visible.length} device(s) (${visible.join(",") || "none"}); ` +
        `offer at most ${visible.length}${visible.length ? `, or name the devices: --gpus ${visible.join(",")}${visible.length === 1 ? "," : ""}` : ""}`,
      { details: { option: "gpus", visible } },
    );
  }
  return visible.slice(0, gpus);
}

const isStream = (v: unknown) => v !== null && typeof v === "object" && typeof (v as NodeJS.WritableStream).write === "function";

const AGENT_CHECKS = {
  ...CONNECTION_CHECKS,
  connection: obj<BusConnection>("pass the result of connectBus(), or leave it out to connect here", ["close", "onClose"]),
  namespace: (v: unknown) => validateName("namespace", v),
  hostId: (v: unknown) => validateName("host id", v),
  cpus: int({ min: 0, hint: "the number of replica processes this host takes" }),
  gpus: gpusCheck,
  heartbeatMs: durationMs({ min: 50, hint: "the period of capacity and liveness writes" }),
  leaseCheckMs: durationMs({ min: 50, hint: "the period of controller liveness checks" }),
  leaseTimeoutMs: durationMs({ min: 0, hint: "how long a controller may be unreachable before its replicas are stopped" }),
  stopGraceMs: durationMs({ min: 0, hint: "how long replicas get between SIGTERM and SIGKILL on stop" }),
  // Each root is checked (exists, is a directory) by resolveAllowedRoots, which names the fix.
  allow: custom<string[]>(Array.isArray, 'an array of directories such as ["/srv/app"]'),
  logger: loggerCheck,
  metrics: obj<Metrics>("pass the result of await createMetrics()", ["expose"]),
  output: custom<NonNullable<AgentOptions["output"]>>(
    (v) => v !== null && typeof v === "object" && isStream((v as Record<string, unknown>).stdout) && isStream((v as Record<string, unknown>).stderr),
    "an object with stdout and stderr streams",
    "such as { stdout: process.stdout, stderr: process.stderr }",
  ),
} satisfies SpecFor<AgentOptions>;

export const agentOptions = defineOptions(
  "agent options",
  AGENT_CHECKS,
  // No gpus default: absent, the agent's own CUDA_VISIBLE_DEVICES decides (resolveGpuIds).
  () => ({ namespace: "default", hostId: defaultHostId(), cpus: availableParallelism(), heartbeatMs: 1_000, leaseCheckMs: 1_000, leaseTimeoutMs: 5_000, stopGraceMs: 3_000 }),
  { example: '{ hostId: "gpu-1", gpus: [0, 2, 5, 7] }' },
);

export type ParsedAgentOptions = Resolved<typeof AGENT_CHECKS, ReturnType<typeof agentOptions.defaults>>;

export function resolveAgentOptions(o: AgentOptions, env: NodeJS.ProcessEnv = process.env): ResolvedAgentOptions & Omit<ParsedAgentOptions, "gpus"> {
  const r = agentOptions.parse(o);
  const gpuIds = resolveGpuIds(r.gpus, env);
  return { ...r, gpus: gpuIds.length, gpuIds, allow: resolveAllowedRoots(r.allow) };
}
