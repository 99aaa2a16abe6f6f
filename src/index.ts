// The public surface of actorbus, name by name. Anything not exported here is internal.

// Registry (TorchRL's get_services / ServiceBase)
export { getServices, BACKENDS } from "./registry/index.ts";
export type {
  Backend,
  GetServicesOptions,
  Services,
  ServiceFactory,
  HandleOptions,
  WatchOptions,
  ServiceClient,
  RegistryEvent,
  RegistryWatch,
  ServiceRecord,
  ServiceStatus,
  InstanceStatus,
} from "./registry/index.ts";

// Calls: per-call options, the served call's context
export { withOptions, currentCall } from "./call/index.ts";
export type { CallOptions, CallContext } from "./call/index.ts";

// Actors and handles
export { handleInfo } from "./actor/index.ts";
export type { ServiceHandle, HandleInfo, ActorOptions, ActorStats, InstanceInfo } from "./actor/index.ts";

// Connections
export { connectBus, wrapNatsConnection, createLocalBus, startNatsServer } from "./connection/index.ts";
export type { BusConnection, ConnectionOptions, LocalBus, NatsServerProcess } from "./connection/index.ts";
export { rateLimitedLogger, stderrLogger } from "./connection/index.ts";
export type { Logger, RateLimitedLogger, RateLimitOptions } from "./connection/index.ts";

// Codec
export { createCodec } from "./codec/index.ts";
export type { Codec, CodecOptions } from "./codec/index.ts";

// Errors
export {
  ActorBusError,
  InvalidNameError,
  InvalidOptionsError,
  ServiceExistsError,
  ServiceNotFoundError,
  LegacyServiceError,
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
  ModuleNotAllowedError,
  CancelledError,
  JetStreamNotEnabledError,
  RegistryError,
} from "./errors/index.ts";
export type { WireError } from "./errors/index.ts";

// Services: ForgeActor-style actors with replicas across hosts
export { Actor, SessionLostError, sessionInfo, collectStatus, formatStatus, liveAgents } from "./service/index.ts";
export type { OutlierEjectionOptions } from "./service/index.ts";
export type { ConfiguredActor, ServiceOptions, ServiceProxy, Endpoint, SessionHandle, SessionOptions, ServiceReport, ReplicaReport, LaunchContext, ReplicaRef, NamespaceStatus } from "./service/index.ts";
export { RouterError, ROUTERS } from "./service/index.ts";
export { RollingUpdateError, VersionUnavailableError, rolling } from "./service/index.ts";
export type { RollingEndpoint, RollingHandle, RollingReport } from "./service/index.ts";
export type { RollingOptions } from "./call/index.ts";
export type { RouterSpec, RouterName, RouterFunction, ReplicaView, RouteRequest } from "./service/index.ts";
export { startAgent } from "./agent/index.ts";
export type { Agent, AgentOptions, HostRecord } from "./agent/index.ts";

// Python executor (TorchRL's PythonExecutorService / PythonInterpreter)
export { PythonExecutorService, PythonInterpreter, InterpreterStartError, extractPythonBlocks } from "./executor/index.ts";
export type { PythonExecutorOptions, SandboxOptions, ExecuteOptions, ExecutionResult, ExecutorStats, InterpreterStats, SandboxInfo, PythonInterpreterOptions, RunResult } from "./executor/index.ts";

// Batched inference (TorchRL's InferenceServer / InferenceTransport)
export { InferenceServer, InProcessTransport, NatsTransport, InferenceEndpoint, registerInference, inferenceClient, stack, unstack } from "./inference/index.ts";
export type { InferenceTransport, InferenceClient, Drained, SubmitOptions, InferenceServerOptions, InferenceModel, ShutdownOptions, InferenceServerStats, InferenceHistograms, NatsTransportOptions, InProcessTransportOptions, InferenceEndpointInfo, RegistryInferenceClient, InferenceClientOptions, TypedArray, Tensor, TensorValue, TensorRecord, TensorBatch, TensorBatchLike } from "./inference/index.ts";
export { InferenceShutdownError, InferenceServerLostError, ResultCountError, TensorRecordError, InferenceServerStateError } from "./inference/index.ts";
export { WeightSyncError } from "./inference/weights.ts";
export type { WeightSyncReceiver, UpdateModelOptions } from "./inference/weights.ts";

// Prometheus metrics (prom-client, loaded by createMetrics only)
export { createMetrics, serveMetrics, watchExecutor, watchInference, FAMILIES as METRIC_FAMILIES } from "./metrics/index.ts";
export type { Metrics, CreateMetricsOptions, MetricsServer, ServeMetricsOptions } from "./metrics/index.ts";

// The live dashboard page (actorbus dashboard)
export { startDashboard } from "./dashboard/index.ts";
export type { Dashboard, DashboardOptions } from "./dashboard/index.ts";
