/**
 * Replica versions, the controller's side. A replica process reports the numeric `version`
 * property of its instance once it is set up and again whenever a call it served changed it
 * (replica-version.ts), on subjects.versions(controllerId). A replica's version is the lowest its
 * processes report, and unknown until every process has reported: calls with `minVersion` go only
 * to replicas known to be at or above it.
 *
 * A process sends its report before the reply of the call that changed the version, on the same
 * connection, and NATS keeps one connection's messages in order: by the time the controller has
 * a call's reply, it has the version that call left (what rolling updates rely on).
 */
import type { Codec } from "../codec/index.ts";
import type { Inbound, Subscription, Transport } from "../connection/index.ts";
import type { Subjects } from "../subjects/index.ts";
import { notifyChange, type ControllerState } from "./controller-state.ts";
import { VersionUnavailableError } from "./errors.ts";
import type { Replica } from "./replica-state.ts";

/** A version report on the wire: [groupId, rank, version or null (the instance has no numeric version)]. */
export type VersionReport = [groupId: string, rank: number, version: number | null];

export function encodeVersionReport(codec: Codec, groupId: string, rank: number, version: number | null): Uint8Array {
  return codec.encode([groupId, rank, version] satisfies VersionReport);
}

function decodeVersionReport(codec: Codec, data: Uint8Array): VersionReport | undefined {
  try {
    const v = codec.decode<unknown>(data);
    if (!Array.isArray(v) || v.length !== 3) return undefined;
    const [groupId, rank, version] = v as unknown[];
    if (typeof groupId !== "string" || !Number.isInteger(rank) || (rank as number) < 0 || (rank as number) > 4096) return undefined;
    if (version !== null && (typeof version !== "number" || !Number.isFinite(version))) return undefined;
    return [groupId, rank as number, version as number | null];
  } catch {
    return undefined;
  }
}

export interface ReplicaVersions {
  /** Hears the replicas' reports (subscribe once the controller id is known, before replicas start). */
  listen(): Subscription;
  /** The replica's version: undefined until every process of its current incarnation has reported a number, and while it has none running. */
  of(r: Replica): number | undefined;
  /** Whether a call asking for `minVersion` may go to `r` (any replica when it asks for none). */
  admits(r: Replica, minVersion: number | undefined): boolean;
  /** The replicas that may take a call asking for `minVersion` (a new array: only such calls pay for it). */
  eligible(replicas: readonly Replica[], minVersion: number): Replica[];
  /** What a call waiting for `minVersion` fails with at its deadline. */
  unavailable(minVersion: number): VersionUnavailableError;
}

export interface ReplicaVersionsParams {
  state: ControllerState;
  transport: Transport;
  codec: Codec;
  subjects: Subjects;
  procs: number;
}

export function createReplicaVersions(p: ReplicaVersionsParams): ReplicaVersions {
  const { state: s, codec, procs } = p;
  // Per incarnation (group), each rank's last report. Reports can arrive before the controller
  // knows the group (a process reports before it says it is ready), so they are kept by group and
  // read when the replica's version is asked for.
  const byGroup = new Map<string, (number | null | undefined)[]>();

  const lowest = (ranks: (number | null | undefined)[] | undefined): number | undefined => {
    if (!ranks) return undefined;
    let min = Infinity;
    for (let i = 0; i < procs; i++) {
      const v = ranks[i];
      if (typeof v !== "number") return undefined;
      if (v < min) min = v;
    }
    return min;
  };

  const of = (r: Replica): number | undefined => {
    if (r.procs.length === 0) return undefined; // not started, or dead: no version until it runs again
    if (r.versionGroup !== r.groupId) {
      r.versionGroup = r.groupId;
      r.version = lowest(byGroup.get(r.groupId));
    }
    return r.version;
  };

  // Groups of incarnations that died linger until there are many: a report of one being started
  // is never dropped for being unknown yet.
  const prune = () => {
    if (byGroup.size <= 4 * s.replicas.length + 16) return;
    const current = new Set(s.replicas.map((r) => r.groupId));
    for (const g of byGroup.keys()) {
      if (byGroup.size <= 2 * s.replicas.length + 8) return;
      if (!current.has(g)) byGroup.delete(g);
    }
  };

  const onReport = (msg: Inbound) => {
    const rep = decodeVersionReport(codec, msg.data);
    if (!rep) return;
    const [groupId, rank, version] = rep;
    if (rank >= procs) return;
    let ranks = byGroup.get(groupId);
    if (!ranks) {
      byGroup.set(groupId, (ranks = []));
      prune();
    }
    ranks[rank] = version;
    const r = s.replicas.find((x) => x.groupId === groupId);
    if (!r) return;
    const before = r.versionGroup === groupId ? r.version : undefined;
    r.versionGroup = groupId;
    r.version = lowest(ranks);
    if (r.version !== before) notifyChange(s);
  };

  const admits = (r: Replica, minVersion: number | undefined): boolean => {
    if (minVersion === undefined) return true;
    const v = of(r);
    return v !== undefined && v >= minVersion;
  };

  return {
    listen: () => p.transport.subscribe(p.subjects.versions(s.controllerId), onReport),
    of,
    admits,
    eligible: (replicas, minVersion) => replicas.filter((r) => admits(r, minVersion)),
    unavailable(minVersion) {
      const versions = s.replicas.map((r) => of(r) ?? null);
      const seen = s.replicas.map((r, i) => `#${r.index} ${r.state}${r.updating ? " updating" : ""} v${versions[i] ?? "?"}`).join(", ");
      const none = versions.every((v) => v === null);
      return new VersionUnavailableError(
        `no replica of "${s.name}" reached version ${minVersion} within the call's deadline (${seen})${
          none ? "; replicas report a version through a numeric `version` property of the instance" : "; a rolling update may be on its way: retry, or lower minVersion"
        }`,
        { details: { service: s.name, minVersion, versions } },
      );
    },
  };
}
