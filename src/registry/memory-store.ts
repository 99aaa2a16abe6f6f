import { subjectMatches } from "../subjects/index.ts";
import type { RegistryStore, StoreChange, StoreWatch } from "./store.ts";

/** The local backend's registry bucket: the KV contract over a Map, watches included. */
export function createMemoryStore(): RegistryStore {
  const data = new Map<string, { value: Uint8Array; revision: number }>();
  const watchers = new Set<{ filter: string; push(c: StoreChange): void }>();
  let revision = 0;
  const notify = (c: StoreChange) => {
    for (const w of watchers) if (subjectMatches(w.filter, c.key)) w.push(c);
  };
  const write = (key: string, value: Uint8Array) => {
    const r = ++revision;
    data.set(key, { value: value.slice(), revision: r });
    notify({ key, value: value.slice(), revision: r, writtenAt: Date.now() });
    return r;
  };
  return {
    async create(key, value) {
      return data.has(key) ? undefined : write(key, value);
    },
    async put(key, value) {
      return write(key, value);
    },
    async get(key) {
      const e = data.get(key);
      return e ? { key, value: e.value.slice(), revision: e.revision } : undefined;
    },
    async delete(key, expectRevision) {
      const e = data.get(key);
      if (expectRevision !== undefined && e?.revision !== expectRevision) return false;
      if (e) {
        data.delete(key);
        notify({ key, value: undefined, revision: ++revision, writtenAt: Date.now() });
      }
      return true;
    },
    async keys(filter) {
      return [...data.keys()].filter((k) => subjectMatches(filter, k));
    },
    async watch(filter, includeExisting) {
      const buffered: StoreChange[] = [];
      let wake: (() => void) | undefined;
      let stopped = false;
      const w = {
        filter,
        push(c: StoreChange) {
          buffered.push(c);
          wake?.();
        },
      };
      if (includeExisting) {
        for (const [key, e] of data) if (subjectMatches(filter, key)) buffered.push({ key, value: e.value.slice(), revision: e.revision, replayed: true });
      }
      watchers.add(w);
      const watch: StoreWatch = {
        stop() {
          stopped = true;
          watchers.delete(w);
          wake?.();
        },
        async *[Symbol.asyncIterator]() {
          try {
            while (!stopped) {
              const next = buffered.shift();
              if (next) {
                yield next;
                continue;
              }
              await new Promise<void>((r) => (wake = r));
              wake = undefined;
            }
          } finally {
            watch.stop();
          }
        },
      };
      return watch;
    },
  };
}
