export { ActorBusError, type ActorBusErrorOptions } from "./base.ts";
export * from "./errors.ts";
export { errorToWire, errorFromWire, errorClassFor, registerErrorClass, type WireError } from "./wire.ts";
