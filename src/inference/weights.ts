import { fail, type Check } from "../options/index.ts";
import { WeightSyncError } from "./errors.ts";

export { WeightSyncError };

export function weightSyncFailure(step: string, err: unknown, atStart: boolean): WeightSyncError {
  const why = err instanceof Error ? err.message : String(err);
  const then = atStart
    ? "the server does not serve; fix the receiver (or reach its sender) and start a new InferenceServer"
    : "the server keeps serving on its current weights and version; it polls again before the next batch";
  return new WeightSyncError(`weightSync: ${step} failed: ${why}; ${then}`, { cause: err, details: { step } });
}

/**
 * The receiving end of a weight-sync scheme (TorchRL's `WeightSyncScheme` on the receiver side),
 * driven by the InferenceServer: `initOnReceiver` and `connect` once at start, `receive` between
 * batches. As upstream, the receiver owns its two flags: a receiver already initialised or
 * connected (say, shared by a restarted server) sets them and the server skips that step.
 */
export interface WeightSyncReceiver<M = unknown, W = unknown> {
  /** True once `initOnReceiver` has run; the server then does not call it again. */
  readonly initializedOnReceiver?: boolean;
  /** True once `connect` has run; the server then does not call it again. */
  readonly synchronizedOnReceiver?: boolean;
  /** Registers the served model under `modelId` (the server's `weightSyncModelId`, default "policy"). */
  initOnReceiver(args: { modelId: string; model: M }): void | Promise<void>;
  /** The rendez-vous with the sender, e.g. fetching the initial weights. Batches wait for it. */
  connect(): void | Promise<void>;
  /**
   * Must not wait for weights: the server calls it before every batch. Returns the new weights,
   * or undefined (or null) when none arrived. Upstream receivers apply the weights to the model
   * they got in `initOnReceiver` before returning them; with the server's `applyWeights` option
   * the server applies them instead.
   */
  receive(): W | undefined | null | Promise<W | undefined | null>;
}

export interface UpdateModelOptions {
  /** Bump `policyVersion` and count a weight update once `fn` succeeds. Default true. */
  markWeightUpdate?: boolean;
}

/**
 * Mutual exclusion between the serving loop's use of the model (a batch, a weight-sync poll) and
 * updates (`updateModel`, weight-sync start-up): an update waits for the running batch and holds
 * the next one until it is done, so no batch runs on half-applied weights. Updates run in the
 * order they were asked for. The loop's path when no update is pending takes no await: updates
 * every hundred batches must not slow down the other ninety-nine.
 */
export class ModelGate {
  private held = false;
  private readonly queue: (() => Promise<void>)[] = [];
  private draining: Promise<void> | undefined;

  /** Loop side: takes the model. Undefined when taken at once, else resolves once taken. */
  acquire(): Promise<void> | undefined {
    if (this.draining === undefined && this.queue.length === 0) {
      this.held = true;
      return undefined;
    }
    return this.acquireAfterUpdates();
  }

  /** Loop side: gives the model back; updates asked for meanwhile run now. */
  release(): void {
    this.held = false;
    if (this.queue.length > 0 && this.draining === undefined) this.draining = this.drain();
  }

  /** Runs `fn` when no batch is using the model; settles as `fn` does. */
  run<T>(fn: () => T | Promise<T>): Promise<Awaited<T>> {
    return new Promise<Awaited<T>>((resolve, reject) => {
      this.queue.push(async () => {
        try {
          resolve(await fn());
        } catch (err) {
          reject(err);
        }
      });
      if (!this.held && this.draining === undefined) this.draining = this.drain();
    });
  }

  private async acquireAfterUpdates(): Promise<void> {
    // A new update may start between the end of one drain and this continuation: wait it out too.
    while (this.draining !== undefined || this.queue.length > 0) {
      this.draining ??= this.drain();
      await this.draining;
    }
    this.held = true;
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) await this.queue.shift()!();
    } finally {
      this.draining = undefined;
    }
  }
}

/**
 * The `policyVersionKey` checker: a key, a dotted key path ("info.policyVersion") or an array of
 * keys (for keys containing dots), normalised to the array; null disables the tag.
 */
export const versionKeyCheck: Check<readonly string[] | null> = (v, key, where) => {
  if (v === null) return null;
  const path = typeof v === "string" ? v.split(".") : Array.isArray(v) ? [...(v as unknown[])] : undefined;
  const expected = 'a key such as "policyVersion", a dotted key path such as "info.policyVersion", an array of keys, or null';
  if (!path || path.length === 0 || path.some((p) => typeof p !== "string" || p === "")) {
    throw fail(where, key, expected, v, "null disables the version tag");
  }
  const bad = (path as string[]).find((p) => p === "__proto__" || p === "constructor" || p === "prototype");
  if (bad) throw fail(where, key, expected, v, `"${bad}" would write into the record's prototype; choose another key`);
  return path as string[];
};

export function isPlainRecord(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== "object") return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * `result` with `version` at `path`, as a copy: a model may hand out the same object twice (a
 * cached output, the in-process transport passes results by reference), and a later batch's tag
 * must not rewrite what an earlier caller already holds. Missing intermediate records are
 * created; a result that is not a plain record, or whose path runs into something that is not
 * one (a typed array, a class instance), is returned untouched.
 */
export function withVersion(result: unknown, path: readonly string[], version: number, at = 0): unknown {
  if (!isPlainRecord(result)) return result;
  const key = path[at]!;
  if (at === path.length - 1) return copyWith(result, key, version);
  const inner = result[key];
  if (inner !== undefined && !isPlainRecord(inner)) return result;
  const tagged = withVersion(inner ?? {}, path, version, at + 1);
  return copyWith(result, key, tagged);
}

const hasOwn = Object.hasOwn;
const isEnumerable = Object.prototype.propertyIsEnumerable;

/**
 * `{ ...record, [key]: value }` built by assignment: V8 took ~0.4 µs per result for the spread
 * with a computed key, ~0.09 µs for this, and every result of every batch goes through it. The
 * same own enumerable keys in the same order, symbols included; an own "__proto__" key stays a
 * key (assigning it would set the copy's prototype). `key` is never "__proto__" (versionKeyCheck).
 */
function copyWith(record: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  const out: Record<string | symbol, unknown> = {};
  for (const k in record) {
    if (!hasOwn(record, k)) continue;
    if (k === "__proto__") Object.defineProperty(out, k, { value: record[k], enumerable: true, writable: true, configurable: true });
    else out[k] = record[k];
  }
  const symbols = Object.getOwnPropertySymbols(record);
  for (let i = 0; i < symbols.length; i++) {
    const s = symbols[i]!;
    if (isEnumerable.call(record, s)) out[s] = (record as Record<symbol, unknown>)[s];
  }
  out[key] = value;
  return out as Record<string, unknown>;
}
