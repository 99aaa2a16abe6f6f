import { InvalidOptionsError } from "../errors/index.ts";
import { callOptions, type CallOptions, type ResolvedCallOptions } from "./options.ts";

/** Every kind of handle answers this symbol with a copy of itself bound to more options. */
export const WITH_OPTIONS = Symbol.for("actorbus.withOptions");

export type OptionsBinder<H> = (options: ResolvedCallOptions) => H;

/**
 * The same handle (registry handle, `services.at`, service proxy, session, endpoint form such as
 * `svc.method.fanout`) with these options on every call made through it. Options stack:
 * `withOptions(withOptions(h, a), b)` has a's values where b gives none.
 */
export function withOptions<H>(handle: H, options: CallOptions): H {
  const bind = (handle as Record<symbol, unknown> | null | undefined)?.[WITH_OPTIONS];
  if (typeof bind !== "function") {
    throw new InvalidOptionsError(
      "withOptions() takes a handle: from services.get()/at()/getClient(), asService()/asActor(), a session, or an endpoint form such as svc.method.fanout",
    );
  }
  return (bind as OptionsBinder<H>)(callOptions.parse(options, "withOptions"));
}
