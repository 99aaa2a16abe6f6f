import { describeOp } from "../reply/index.ts";
import { MAX_TIMER_MS } from "../connection/index.ts";
import { CodecError } from "../errors/index.ts";
import type { AgentRequest, ProcSpec } from "./protocol.ts";

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);
const isMs = (v: unknown, min: number) => typeof v === "number" && Number.isFinite(v) && v >= min && v <= MAX_TIMER_MS;
const isInt = (v: unknown, min: number) => typeof v === "number" && Number.isInteger(v) && v >= min;

const STRING_FIELDS = ["namespace", "service", "controllerId", "groupId", "procId", "moduleUrl", "exportName", "label"] as const;
const ACTOR_FIELDS = ["maxConcurrency", "maxPending", "timeoutMs", "drainTimeoutMs"] as const;

/** Why `v` is not a ProcSpec, or undefined if it is one. */
function specProblem(v: unknown): string | undefined {
  if (!isObject(v)) return "is not an object";
  for (const k of STRING_FIELDS) if (typeof v[k] !== "string") return `${k} must be a string`;
  if (!isInt(v.rank, 0) || !isInt(v.size, 1) || (v.rank as number) >= (v.size as number)) return "rank and size must be integers with 0 <= rank < size";
  if (!Array.isArray(v.args)) return "args must be an array";
  if (!isObject(v.actor) || ACTOR_FIELDS.some((k) => !isInt((v.actor as Record<string, unknown>)[k], 0))) return `actor must hold integers ${ACTOR_FIELDS.join(", ")}`;
  if (typeof v.queueGroup !== "boolean" || typeof v.gpu !== "boolean") return "queueGroup and gpu must be booleans";
  if (!isObject(v.env) || Object.values(v.env).some((x) => typeof x !== "string")) return "env must map names to strings";
  return undefined;
}

/**
 * Checks a decoded request on an agent's subject before anything acts on it: a field of the
 * wrong type would otherwise surface as a TypeError deep in spawn or stop, or start a process
 * from a half-formed spec. Throws CodecError naming the first problem.
 */
export function parseAgentRequest(v: unknown): AgentRequest {
  const bad = (why: string): never => {
    throw new CodecError(`malformed agent request: ${why}`);
  };
  if (!isObject(v)) return bad('expected { op: "ping" | "list" | "spawn" | "stop", ... }');
  switch (v.op) {
    case "ping":
    case "list":
      return { op: v.op };
    case "spawn": {
      if (!Array.isArray(v.procs)) return bad("spawn: procs must be an array of process specs");
      v.procs.forEach((s, i) => {
        const why = specProblem(s);
        if (why) bad(`spawn: procs[${i}] ${why}`);
      });
      if (!isMs(v.startTimeoutMs, 1)) return bad(`spawn: startTimeoutMs must be a number of milliseconds in 1..${MAX_TIMER_MS}`);
      return { op: "spawn", procs: v.procs as ProcSpec[], startTimeoutMs: v.startTimeoutMs as number };
    }
    case "stop":
      if (!Array.isArray(v.procIds) || v.procIds.some((id) => typeof id !== "string")) return bad("stop: procIds must be an array of strings");
      if (!isMs(v.graceMs, 0)) return bad(`stop: graceMs must be a number of milliseconds in 0..${MAX_TIMER_MS}`);
      return { op: "stop", procIds: v.procIds as string[], graceMs: v.graceMs as number };
    default:
      return bad(`unknown op ${describeOp(v.op)}`);
  }
}
