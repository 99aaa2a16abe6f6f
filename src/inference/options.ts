import { abortSignalOption, activeCall } from "../call/index.ts";
import { CancelledError } from "../errors/index.ts";
import { defineOptions, durationMs, type SpecFor } from "../options/index.ts";
import type { SubmitOptions } from "./transport.ts";

/** Deadlines and buffering common to both transports. */
export const TRANSPORT_DEFAULTS = Object.freeze({
  timeoutMs: 30_000,
  maxBuffered: 4096,
  leaseMs: 1_000,
});

const callDeadline = durationMs({ min: 1, hint: "the deadline of one inference call" });

/** Per-call options of submit()/call(); the transport's timeoutMs applies when none is given. */
export const submitOptions = defineOptions(
  "submit options",
  { timeoutMs: callDeadline, signal: abortSignalOption } satisfies SpecFor<SubmitOptions>,
  {},
  { example: "{ timeoutMs: 5_000 }" },
);

/** The call's deadline: checked like every deadline, so none outlives its timer. Hot path: no options, no work. */
export function submitTimeoutMs(opts: SubmitOptions | undefined, fallback: number): number {
  return opts === undefined ? fallback : (submitOptions.parse(opts).timeoutMs ?? fallback);
}

/**
 * The call's signal: its own, else that of the call being served here (an actor method calling
 * the model is cancelled with its caller).
 */
export function submitSignal(opts: SubmitOptions | undefined): AbortSignal | undefined {
  return opts?.signal ?? activeCall()?.signal;
}

export const cancelledError = () => new CancelledError("the inference call was cancelled by its caller");
