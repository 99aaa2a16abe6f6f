/**
 * Messages between handles and hosts:
 *   call request  payload: the encoded argument array; method, deadline, call id and metadata
 *                 in the Ab-Call / Ab-Meta headers (src/call/wire.ts), so relays need not decode
 *   cancel        payload: the call id (UTF-8), on subjects.cancel(call subject)
 *   reply         a Reply of src/reply
 *   control       { op: "ping" | "stats" | "stop", graceMs? }  → a Reply
 */
export type ControlOp = { op: "ping" } | { op: "stats" } | { op: "stop"; graceMs?: number };

/** Identity of one host instance, as ping answers and the registry records it. */
export interface InstanceInfo {
  instanceId: string;
  service: string;
  hostname: string;
  pid: number;
  hostId: string;
  startedAt: string;
}
