export { Actor, type ConfiguredActor } from "./actor.ts";
export { SessionLostError, RouterError, RollingUpdateError, VersionUnavailableError } from "./errors.ts";
export { sessionInfo, controllerOf, type SessionInfo } from "./proxy.ts";
export { resolveServiceOptions, SERVICE_DEFAULTS, ROUTINGS, PLACEMENTS, type ServiceOptions, type ResolvedServiceOptions, type Routing, type PlacementMode } from "./options.ts";
export { createRouter, checkRouter, ROUTERS, ANY_CALL, SESSION_CALL, NO_METADATA, type Router, type RouterConfig, type RouterSpec, type RouterName, type RouterFunction, type ReplicaView, type RouteRequest, type Routable } from "./router.ts";
export { checkOutlierEjection, OUTLIER_DEFAULTS, type OutlierEjectionOptions, type ResolvedOutlierOptions } from "./outliers.ts";
export { placeService, placeReplica, type HostCapacity, type PlacementRequest, type ReplicaPlacement } from "./placement.ts";
export type { RollingReport } from "./rolling.ts";
export { rolling, type RollingHandle } from "./rolling-handle.ts";
export { microPing, microInfo, microStats, type MicroParams, type MicroEndpointStats } from "./micro.ts";
export { collectStatus, formatStatus, type NamespaceStatus, type StatusRow } from "./status.ts";
export { liveAgents } from "./launchers.ts";
export type {
  ServiceProxy,
  ServiceControls,
  Endpoint,
  EndpointOf,
  RollingEndpoint,
  SessionHandle,
  SessionOptions,
  ServiceReport,
  ReplicaReport,
  ReplicaStateName,
  LaunchContext,
  ReplicaRef,
} from "./types.ts";
