import { getServices } from "../registry/index.ts";
import { isAsyncIterable } from "../stream/index.ts";
import { handleOptions } from "../registry/handle-options.ts";
import { connectionFrom, numericFlag, parse, UsageError } from "./args.ts";

/** `actorbus call <service> <method> [json]`: a JSON array is the argument list, anything else one argument. */
export async function callCommand(argv: string[]): Promise<string> {
  const { values, positionals } = parse(argv, { "timeout-ms": { type: "string" } });
  const [service, method, json] = positionals;
  if (!service || !method) throw new UsageError("usage: actorbus call <service> <method> [json args] [--namespace N] [--timeout-ms MS]");
  const timeoutMs = numericFlag("call", "timeout-ms", values["timeout-ms"], handleOptions.spec.timeoutMs);
  let args: unknown[] = [];
  if (json !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch (err) {
      throw new UsageError(`arguments must be JSON, e.g. '["hello", 2]' (${(err as Error).message})`);
    }
    args = Array.isArray(parsed) ? parsed : [parsed];
  }
  const services = await getServices(connectionFrom(values));
  try {
    const handle = (await services.get(service, { timeoutMs })) as Record<string, (...a: unknown[]) => Promise<unknown>>;
    const result = await handle[method]!(...args);
    if (isAsyncIterable(result)) {
      // A streaming method: one JSON line per item, as it comes.
      for await (const item of result) process.stdout.write(`${JSON.stringify(item, jsonable)}\n`);
      return "";
    }
    return JSON.stringify(result, jsonable, 2);
  } finally {
    await services.close();
  }
}

const jsonable = (_k: string, v: unknown) => (typeof v === "bigint" ? v.toString() : ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v);
