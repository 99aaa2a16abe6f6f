import { Kvm } from "@nats-io/kv";
import type { BusConnection } from "../connection/index.ts";
import { RegistryError } from "../errors/index.ts";
import { namespaceOfBucket } from "../subjects/index.ts";

/**
 * The namespaces that have a registry on this NATS server (their buckets), sorted. Reads the
 * stream list only: nothing is created. The local backend has none to list (an empty array).
 * A user confined to one namespace may not list streams: RegistryError with the server's cause.
 */
export async function listNamespaces(conn: BusConnection): Promise<string[]> {
  if (!conn.nc) return [];
  const out: string[] = [];
  try {
    for await (const status of new Kvm(conn.nc).list()) {
      const ns = namespaceOfBucket(status.bucket);
      if (ns) out.push(ns);
    }
  } catch (err) {
    throw new RegistryError(`cannot list the namespaces on the server: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
  return out.sort();
}
