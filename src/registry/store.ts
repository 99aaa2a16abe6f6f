/**
 * The registry's storage: a key-value bucket with atomic create, compare-and-delete and a watch.
 * JetStream KV implements it on NATS (cross-worker visibility, file storage that survives a
 * server restart); a Map implements it for the local backend.
 */
export interface StoreEntry {
  key: string;
  value: Uint8Array;
  revision: number;
}

export interface StoreChange {
  key: string;
  /** Undefined for deletes and purges. */
  value: Uint8Array | undefined;
  revision: number;
  /** When the change was written, epoch ms by the store's clock (the NATS server's). */
  writtenAt?: number;
  /** A value that existed before the watch started (includeExisting), not a change seen live. */
  replayed?: boolean;
}

export interface StoreWatch extends AsyncIterable<StoreChange> {
  stop(): void;
}

export interface RegistryStore {
  /** Atomic: resolves the new revision, or undefined when the key already holds a value. */
  create(key: string, value: Uint8Array): Promise<number | undefined>;
  put(key: string, value: Uint8Array): Promise<number>;
  get(key: string): Promise<StoreEntry | undefined>;
  /** With `expectRevision`, deletes only if the key is still at that revision (false otherwise). */
  delete(key: string, expectRevision?: number): Promise<boolean>;
  /**
   * Keys matching `filter`. On NATS it may still list a key deleted in the last few seconds
   * (its delete marker waits for watches to see it before it is purged): get() is the truth.
   */
  keys(filter: string): Promise<string[]>;
  watch(filter: string, includeExisting: boolean): Promise<StoreWatch>;
}
