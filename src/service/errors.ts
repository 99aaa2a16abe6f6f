import { ActorBusError } from "../errors/base.ts";

/**
 * The replica a session was bound to died: whatever state the session built there is gone.
 * Not retryable within the session; start a new one, or open sessions with { rebind: true }
 * when the calls do not depend on replica state.
 */
export class SessionLostError extends ActorBusError {
  override readonly code = "SESSION_LOST";
}

/** A user router threw, returned something that is not one of its candidates, or is async. Not retryable. */
export class RouterError extends ActorBusError {
  override readonly code = "ROUTER";
}

/**
 * A rolling update stopped: the method failed (or could not be sent) on one replica, or the
 * roll's deadline passed or its signal fired. `details.updated` lists the replicas the method
 * completed on, `details.failed` the one it stopped at, `details.notUpdated` the rest; `cause` is
 * the failing replica's error. Not retryable as such: whether calling the method again on the
 * updated replicas is safe is the caller's to say.
 */
export class RollingUpdateError extends ActorBusError {
  override readonly code = "ROLLING_UPDATE";
}

/**
 * A call with `minVersion` found no replica at or above it within its deadline. The message and
 * `details.versions` name the versions the replicas reported (null: none yet). Retryable: a
 * rolling update may be on its way.
 */
export class VersionUnavailableError extends ActorBusError {
  override readonly code = "VERSION_UNAVAILABLE";
  override readonly retryable = true;
}
