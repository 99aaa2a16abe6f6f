export type { InferenceTransport, InferenceClient, Drained, SubmitOptions } from "./transport.ts";
export { InProcessTransport, type InProcessTransportOptions } from "./in-process.ts";
export { NatsTransport, type NatsTransportOptions } from "./nats.ts";
export { InferenceServer, type InferenceServerOptions, type InferenceModel, type ShutdownOptions } from "./server.ts";
export type { InferenceServerStats, InferenceHistograms } from "./stats.ts";
export { stack, unstack, type TypedArray, type Tensor, type TensorValue, type TensorRecord, type TensorBatch, type TensorBatchLike } from "./tensor-records.ts";
export { InferenceShutdownError, InferenceServerLostError, ResultCountError, TensorRecordError, InferenceServerStateError } from "./errors.ts";
export { InferenceEndpoint, registerInference, inferenceClient, type InferenceEndpointInfo, type RegistryInferenceClient, type InferenceClientOptions } from "./service.ts";
