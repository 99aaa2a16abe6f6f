import type { InstanceInfo, ResolvedActorOptions } from "../actor/index.ts";

/**
 * What the registry bucket holds, as JSON so `nats kv get actorbus_<ns> svc.<name>` is readable.
 * No secrets ever go here: only names, identities, options and method lists.
 */
export interface ServiceRecord {
  name: string;
  namespace: string;
  /** "actor" for services hosted with register(); other kinds (replicated services, inference) add their own. */
  kind: string;
  className: string;
  methods: string[];
  /**
   * "factory": register() constructed the object and owns it (stops dispose it). "instance":
   * registerInstance() serves an object its owner keeps. Absent in records of older versions: "factory".
   */
  registration?: RegistrationKind;
  /** The instance that created the record; more instances may serve (see InstanceRecord). */
  owner: InstanceInfo;
  options: Omit<ResolvedActorOptions, "metadata">;
  metadata: Record<string, string>;
  createdAt: string;
}

export type RegistrationKind = "factory" | "instance";

export type InstanceRecord = InstanceInfo;

/**
 * A factory may carry its record kind under this key (default "actor"): replicated services
 * register a forwarding controller of kind "service" through the ordinary register path.
 */
export const RECORD_KIND = Symbol.for("actorbus.recordKind");

export function recordKindOf(factory: unknown): string {
  const k = (factory as Record<symbol, unknown> | null)?.[RECORD_KIND];
  return typeof k === "string" ? k : "actor";
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeRecord(r: ServiceRecord | InstanceRecord): Uint8Array {
  return enc.encode(JSON.stringify(r));
}

export function decodeRecord<T>(bytes: Uint8Array): T | undefined {
  try {
    return JSON.parse(dec.decode(bytes)) as T;
  } catch {
    return undefined; // a foreign or corrupt value is treated as absent rather than crashing get()
  }
}
