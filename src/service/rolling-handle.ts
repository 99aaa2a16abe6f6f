import type { ServiceHandle } from "../actor/index.ts";
import { ROLLING, rollingOptions, type ResolvedRollingOptions, type RollingOptions } from "../call/index.ts";
import { InvalidOptionsError } from "../errors/index.ts";
import type { ServiceProxy } from "./types.ts";

type AnyFn = (...args: any[]) => any;
type MethodKeys<T> = { [K in keyof T]: T[K] extends AnyFn ? K : never }[keyof T] & string;

/** `rolling(handle)`: each method of T rolled over the service's replicas, resolving to their results in replica order. */
export type RollingHandle<T> = {
  readonly [K in MethodKeys<T>]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>[]> : never;
};

/**
 * Rolling updates through any handle to a replicated service: `await rolling(handle).loadWeights(w, 7)`
 * from a worker that found the service in the registry (`services.get()`/`at()`), as
 * `svc.loadWeights.rolling(w, 7)` does on the proxy asService() returned (which this also takes).
 * Call options come from the handle (`rolling(withOptions(handle, { timeoutMs }))`), the roll's
 * own from `options`.
 */
export function rolling<T>(handle: ServiceHandle<T> | ServiceProxy<T>, options?: RollingOptions): RollingHandle<T> {
  const bind = (handle as Record<symbol, unknown> | null | undefined)?.[ROLLING];
  if (typeof bind !== "function") {
    throw new InvalidOptionsError("rolling() takes a handle to a replicated service: from services.get()/at(), or the proxy asService() returned (whose endpoints also have .rolling)");
  }
  return (bind as (o: ResolvedRollingOptions) => RollingHandle<T>)(rollingOptions.parse(options, "rolling() options"));
}
