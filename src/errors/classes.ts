import { ActorBusError } from "./base.ts";
import * as core from "./errors.ts";
import { InterpreterStartError } from "../executor/errors.ts";
import {
  InferenceServerLostError,
  InferenceServerStateError,
  InferenceShutdownError,
  ResultCountError,
  TensorRecordError,
  WeightSyncError,
} from "../inference/errors.ts";
import { RollingUpdateError, RouterError, SessionLostError, VersionUnavailableError } from "../service/errors.ts";

export type ErrorClass = new (message: string, options?: { details?: Record<string, unknown>; cause?: unknown }) => ActorBusError;

/**
 * Every error class of the library (ActorBusError and its subclasses): the one table that
 * errorFromWire and the codec rebuild errors with. It imports the classes rather than letting
 * their modules register themselves, so a caller rebuilds a class whether or not it loaded the
 * module that defines it. Those modules import only ./base.ts of src/errors: the index would
 * make a cycle through this table.
 */
const CLASSES: readonly ErrorClass[] = [
  ActorBusError,
  ...(Object.values(core) as ErrorClass[]),
  SessionLostError,
  RouterError,
  RollingUpdateError,
  VersionUnavailableError,
  InterpreterStartError,
  InferenceShutdownError,
  InferenceServerLostError,
  ResultCountError,
  TensorRecordError,
  InferenceServerStateError,
  WeightSyncError,
];

const BY_CODE: ReadonlyMap<string, ErrorClass> = new Map(CLASSES.map((cls) => [new cls("").code, cls]));

/** The class of a stable code, if the library defines one. */
export function errorClassFor(code: string): ErrorClass | undefined {
  return BY_CODE.get(code);
}
