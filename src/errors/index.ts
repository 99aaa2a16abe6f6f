export { ActorBusError, type ActorBusErrorOptions } from "./base.ts";
export * from "./errors.ts";
export { errorToWire, errorFromWire, type WireError } from "./wire.ts";
export { errorClassFor, type ErrorClass } from "./classes.ts";
