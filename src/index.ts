// The public surface of actorbus, name by name. Anything not exported here is internal.

// Registry (TorchRL's get_services / ServiceBase)
export { getServices, BACKENDS } from "./registry/index.ts";
export type {
  Backend,
  GetServicesOptions,
  Services,
  ServiceFactory,
  HandleOptions,
  RegistryEvent,
  RegistryWatch,
  ServiceRecord,
  ServiceStatus,
  InstanceStatus,
} from "./registry/index.ts";

// Actors and handles
export { handleInfo } from "./actor/index.ts";
export type { ServiceHandle, HandleInfo, ActorOptions, ActorStats, InstanceInfo } from "./actor/index.ts";

// Connections
export { connectBus, wrapNatsConnection, createLocalBus, startNatsServer } from "./connection/index.ts";
export type { BusConnection, ConnectionOptions, LocalBus, NatsServerProcess } from "./connection/index.ts";

// Codec
export { createCodec } from "./codec/index.ts";
export type { Codec } from "./codec/index.ts";

// Errors
export {
  ActorBusError,
  InvalidNameError,
  InvalidOptionsError,
  ServiceExistsError,
  ServiceNotFoundError,
  ServiceUnavailableError,
  MethodNotFoundError,
  CallTimeoutError,
  OverloadedError,
  CodecError,
  RemoteError,
  ConnectionLostError,
  ClosedError,
  NoServerError,
  PermissionError,
  ReplicaCrashedError,
  PlacementError,
} from "./errors/index.ts";
export type { WireError } from "./errors/index.ts";
