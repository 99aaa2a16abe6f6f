import { ActorBusError } from "../errors/base.ts";

/**
 * Failures specific to inference serving. Each is in the error table (src/errors/classes.ts), so
 * a client in another process gets the same class (and `code`) the server raised.
 */

/** The server stopped before running the request; another server of the same name may take it. */
export class InferenceShutdownError extends ActorBusError {
  override readonly code = "INFERENCE_SHUTDOWN";
  override readonly retryable = true;
}

/**
 * The server holding the request stopped renewing its lease (process killed, host lost, event
 * loop blocked longer than `leaseMs`). The request may or may not have run.
 */
export class InferenceServerLostError extends ActorBusError {
  override readonly code = "INFERENCE_SERVER_LOST";
  override readonly retryable = true;
}

/** The model (through `split`) returned a different number of results than it was given inputs. */
export class ResultCountError extends ActorBusError {
  override readonly code = "INFERENCE_RESULT_COUNT";
}

/** `stack`/`unstack` were given records or a batch that do not line up (keys, dtypes, shapes). */
export class TensorRecordError extends ActorBusError {
  override readonly code = "TENSOR_RECORD";
}

/** `start()` on a server that is running or was shut down. */
export class InferenceServerStateError extends ActorBusError {
  override readonly code = "INFERENCE_SERVER_STATE";
}

/**
 * A `weightSync` step failed. At start (`initOnReceiver`, `connect`) the server does not serve:
 * `ready()` rejects with it and queued callers get it. Between batches (`receive`,
 * `applyWeights`) the server keeps serving on the weights it had; the error is in
 * `server.weightSyncError` and counted in `stats().weightSyncErrors`.
 */
export class WeightSyncError extends ActorBusError {
  override readonly code = "INFERENCE_WEIGHT_SYNC";
}

export const SHUTTING_DOWN_MESSAGE = "InferenceServer is shutting down.";
