import { decodeRecord, type ServiceRecord } from "./records.ts";
import { watchOptions } from "./handle-options.ts";
import type { RegistryStore } from "./store.ts";
import type { RegistryEvent, RegistryWatch, WatchOptions } from "./types.ts";
import type { Subjects } from "../subjects/index.ts";
import type { Histogram } from "../metrics/index.ts";

/** The registry's watches: each a KV watch of the service records, all closed with the registry. */
export interface RegistryWatches {
  watch(options?: WatchOptions): RegistryWatch;
  closeAll(): Promise<void>;
}

/**
 * `lag`, when metrics are on, gets the seconds from each live change's write to its delivery
 * here. It compares the server's clock with this host's, so skew between them shows up in it.
 */
export function createRegistryWatches(store: RegistryStore, subjects: Subjects, ensureOpen: () => void, lag?: Histogram): RegistryWatches {
  const watches = new Set<RegistryWatch>();

  const watchImpl = (options?: WatchOptions): RegistryWatch => {
    ensureOpen();
    const opts = watchOptions.parse(options);
    let stopped = false;
    let closing: Promise<void> | undefined;
    const requestedAt = Date.now();
    // Started now, not on the first next(): what changes after watch() returns is not missed
    // (on NATS once ready() resolves: the KV consumer takes a round trip to set up).
    const started = store.watch(subjects.serviceKeyFilter(), opts.includeExisting).then((w) => {
      if (stopped) w.stop();
      return w;
    });
    // A failed start surfaces from the iteration and ready(); nobody may be listening yet.
    started.catch(() => {});
    async function* events(): AsyncGenerator<RegistryEvent> {
      const w = await started;
      if (stopped) return;
      for await (const c of w) {
        const name = subjects.serviceFromKey(c.key);
        if (!name) continue;
        // Values replayed at the start are old, not late (nats.js flags the last of them as an
        // update, so writes from before the watch are left out by time too).
        if (lag && !c.replayed && c.writtenAt !== undefined && c.writtenAt >= requestedAt) lag.observe(Math.max(0, Date.now() - c.writtenAt) / 1000);
        const record = c.value && decodeRecord<ServiceRecord>(c.value);
        yield record ? { type: "registered", name, record, revision: c.revision } : { type: "removed", name, revision: c.revision };
      }
    }
    const watch: RegistryWatch = {
      async ready() {
        await started;
      },
      [Symbol.asyncIterator]: () => {
        const it = events();
        // Breaking out of `for await` stops the underlying KV watch.
        return { next: () => it.next(), return: async () => (await watch.close(), { done: true, value: undefined }) };
      },
      close() {
        closing ??= (async () => {
          stopped = true;
          watches.delete(watch);
          (await started.catch(() => undefined))?.stop();
        })();
        return closing;
      },
      [Symbol.asyncDispose]() {
        return this.close();
      },
    };
    watches.add(watch);
    return watch;
  };

  return {
    watch: watchImpl,
    async closeAll() {
      await Promise.all([...watches].map((w) => w.close()));
    },
  };
}
