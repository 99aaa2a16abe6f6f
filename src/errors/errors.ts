import { ActorBusError } from "./base.ts";

// Codes are part of the public contract: programs switch on them, so they never change.

export class InvalidNameError extends ActorBusError {
  override readonly code = "INVALID_NAME";
}
export class InvalidOptionsError extends ActorBusError {
  override readonly code = "INVALID_OPTIONS";
}
/** The seed's ValueError: a name is already registered in the namespace. */
export class ServiceExistsError extends ActorBusError {
  override readonly code = "SERVICE_EXISTS";
}
/** The seed's KeyError: no such service in the namespace. */
export class ServiceNotFoundError extends ActorBusError {
  override readonly code = "SERVICE_NOT_FOUND";
}
/** Nobody is listening on the service's subject (NATS no-responders) or it is stopping. */
export class ServiceUnavailableError extends ActorBusError {
  override readonly code = "SERVICE_UNAVAILABLE";
  override readonly retryable = true;
}
/**
 * getClient() on a legacy raw actor: a service registered from a class or factory, which the
 * registry owns; get() is its handle. Only registerInstance() services have owner-side clients.
 */
export class LegacyServiceError extends ActorBusError {
  override readonly code = "LEGACY_SERVICE";
}
export class MethodNotFoundError extends ActorBusError {
  override readonly code = "METHOD_NOT_FOUND";
}
export class CallTimeoutError extends ActorBusError {
  override readonly code = "CALL_TIMEOUT";
  override readonly retryable = true;
}
/** The actor's bounded queue is full: back off and retry. */
export class OverloadedError extends ActorBusError {
  override readonly code = "OVERLOADED";
  override readonly retryable = true;
}
/** A value that the wire format cannot carry, or a payload over the server's limit. */
export class CodecError extends ActorBusError {
  override readonly code = "CODEC";
}
/** The remote method threw; `remoteName`, `message` and `remoteStack` are the thrower's. */
export class RemoteError extends ActorBusError {
  override readonly code = "REMOTE";
  get remoteName(): string {
    return String(this.details.remoteName ?? "Error");
  }
  get remoteStack(): string | undefined {
    const s = this.details.remoteStack;
    return typeof s === "string" ? s : undefined;
  }
}
/** The connection to NATS dropped while the call was in flight; the call may or may not have run. */
export class ConnectionLostError extends ActorBusError {
  override readonly code = "CONNECTION_LOST";
  override readonly retryable = true;
}
/** The registry, handle or connection was used after close(). */
export class ClosedError extends ActorBusError {
  override readonly code = "CLOSED";
}
/** No NATS server could be reached; the message says how to get one. */
export class NoServerError extends ActorBusError {
  override readonly code = "NO_SERVER";
  override readonly retryable = true;
}
/** The NATS account's permissions forbid the subject or the registry bucket. */
export class PermissionError extends ActorBusError {
  override readonly code = "PERMISSION_DENIED";
}
/** A replica process died while serving the call; another replica may succeed. */
export class ReplicaCrashedError extends ActorBusError {
  override readonly code = "REPLICA_CRASHED";
  override readonly retryable = true;
}
/** Placement (procs, hosts, GPUs) cannot be met by the available hosts. */
export class PlacementError extends ActorBusError {
  override readonly code = "PLACEMENT";
}
/** An agent refused to spawn a module outside its allowed roots (`--allow`), or with an environment that could load other code. */
export class ModuleNotAllowedError extends ActorBusError {
  override readonly code = "MODULE_NOT_ALLOWED";
}
/**
 * The caller cancelled the call (its AbortSignal fired, or a cancel reached the host): the
 * caller asked for it, so retrying is the caller's own decision, never automatic.
 */
export class CancelledError extends ActorBusError {
  override readonly code = "CANCELLED";
}
/**
 * The NATS server (or the account) has JetStream off, and the registry of the "nats" backend
 * is a JetStream KV bucket; the message says how to turn it on.
 */
export class JetStreamNotEnabledError extends ActorBusError {
  override readonly code = "JETSTREAM_NOT_ENABLED";
}
/**
 * A registry (JetStream) failure that is neither transient (those are ServiceUnavailableError)
 * nor a configuration the message can name; `cause` holds the server's error.
 */
export class RegistryError extends ActorBusError {
  override readonly code = "REGISTRY";
}
