import { ClosedError } from "../errors/index.ts";
import { createReplica, type Replica } from "./replica-state.ts";

/**
 * What the parts of one service's controller share (supervisor, routed calls, reporter): its
 * replicas, whether it still runs, and who waits for a replica to change. One object per
 * controller, handed to each part.
 */
export interface ControllerState {
  readonly name: string;
  readonly replicas: Replica[];
  state: "running" | "stopping" | "stopped";
  /** The registry's instance id of the service's registry face; "" until it is registered. */
  controllerId: string;
  /** Calls waiting for a replica to become usable; each is called on every change. */
  readonly changeWaiters: Set<() => void>;
}

export function createControllerState(name: string, numReplicas: number): ControllerState {
  return {
    name,
    replicas: Array.from({ length: numReplicas }, (_, index) => createReplica(index)),
    state: "running",
    controllerId: "",
    changeWaiters: new Set<() => void>(),
  };
}

/** A replica started, died, failed or became reachable again, or the controller is stopping. */
export function notifyChange(s: ControllerState): void {
  for (const w of [...s.changeWaiters]) w();
}

export function describeStates(s: ControllerState): string {
  return s.replicas.map((r) => `#${r.index} ${r.state}${r.lastError ? ` (${r.lastError})` : ""}`).join(", ");
}

export function closedError(s: ControllerState): ClosedError {
  return new ClosedError(`service "${s.name}" is shut down`, { details: { service: s.name } });
}
