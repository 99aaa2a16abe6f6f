import { decodeRecord, type ServiceRecord } from "./records.ts";
import type { RegistryStore } from "./store.ts";
import type { Subjects } from "../subjects/index.ts";

/** What the registry's store holds about services, read (never written) for the other parts. */
export interface RecordReads {
  /** The record of `name` and its revision, if one is stored. */
  readRecord(name: string): Promise<{ record: ServiceRecord; revision: number } | undefined>;
  /** The ids of the instances registered under `name`. */
  instanceIds(name: string): Promise<string[]>;
  /** The sorted names of every stored record, live or not. */
  registeredNames(): Promise<string[]>;
}

export function createRecordReads(store: RegistryStore, subjects: Subjects): RecordReads {
  const readRecord = async (name: string) => {
    const e = await store.get(subjects.serviceKey(name));
    const record = e && decodeRecord<ServiceRecord>(e.value);
    return record ? { record, revision: e!.revision } : undefined;
  };

  const instanceIds = async (name: string): Promise<string[]> => {
    const prefix = subjects.instanceKey(name, "");
    return (await store.keys(subjects.instanceKeyFilter(name))).map((k) => k.slice(prefix.length));
  };

  const registeredNames = async () =>
    (await store.keys(subjects.serviceKeyFilter())).map((k) => subjects.serviceFromKey(k)!).filter(Boolean).sort();

  return { readRecord, instanceIds, registeredNames };
}
