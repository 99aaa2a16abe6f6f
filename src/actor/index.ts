export { createActorHost, RELAY, type ActorHost, type ActorHostParams, type Relay } from "./host.ts";
export { HostedCall } from "./hosted-call.ts";
export { requestCall, type OutgoingCall } from "./send-call.ts";
export { createHandle, handleInfo, type ServiceHandle, type Remote, type HandleInfo, type HandleParams } from "./handle.ts";
export { resolveActorOptions, ACTOR_DEFAULTS, type ActorOptions, type ResolvedActorOptions } from "./options.ts";
export { callableMethods, declaredMethods, instantiate, OWNER_LIFECYCLE_METHODS } from "./methods.ts";
export { encodeOk, encodeErr, respondSafely, describeOp, unwrapReply, type Reply, type ControlOp, type InstanceInfo } from "./protocol.ts";
export { createStatsRecorder, type ActorStats, type StatsRecorder } from "./stats.ts";
