import type { BusConnection, Logger } from "../connection/index.ts";
import { ClosedError } from "../errors/index.ts";
import { sinkOf, type Metrics } from "../metrics/index.ts";
import { validateName, type Subjects } from "../subjects/index.ts";
import { createRegistryHandles } from "./handles.ts";
import { readStatus } from "./instance-status.ts";
import { createServiceLiveness } from "./liveness.ts";
import { createRecordReads } from "./record-reads.ts";
import { createRegistrar } from "./registrar.ts";
import type { RegistryStore } from "./store.ts";
import type { Services } from "./types.ts";
import { createRegistryWatches } from "./watch.ts";

export interface RegistryParams {
  conn: BusConnection;
  ownsConnection: boolean;
  store: RegistryStore;
  subjects: Subjects;
  /** Default deadline of handles when neither the handle nor the service sets one. */
  timeoutMs: number;
  /** Identity of this process as a host (agents set it; default: the machine's hostname). */
  hostId: string;
  /** Deadline for liveness pings and stop requests. */
  controlTimeoutMs: number;
  /** How long a service must stay silent before its registry entry is taken for stale. */
  staleAfterMs: number;
  /** Passed to every actor host this registry starts (each limits it on its own). */
  logger?: Logger;
  /** What the registry's hosts and handles record into. */
  metrics?: Metrics;
}

/** The registry of one namespace: its registrar, liveness checks, handles and watches, wired. */
export function createRegistry(p: RegistryParams): Services {
  const { conn, store, subjects } = p;
  const ns = subjects.namespace;
  const state = { closed: false, closing: undefined as Promise<void> | undefined };

  const ensureOpen = () => {
    if (state.closed) throw new ClosedError(`the registry of namespace "${ns}" is closed`);
  };

  const records = createRecordReads(store, subjects);
  const liveness = createServiceLiveness({ conn, store, subjects, records, controlTimeoutMs: p.controlTimeoutMs, staleAfterMs: p.staleAfterMs });
  const metrics = sinkOf(p.metrics);
  const handles = createRegistryHandles({ conn, subjects, records, liveness, timeoutMs: p.timeoutMs, ensureOpen, metrics });
  const registrar = createRegistrar({ conn, store, subjects, records, liveness, handles, hostId: p.hostId, controlTimeoutMs: p.controlTimeoutMs, logger: p.logger, metrics, ensureOpen });
  const watches = createRegistryWatches(store, subjects, ensureOpen, metrics.watchLag(ns));

  const closeImpl = () => {
    state.closing ??= (async () => {
      state.closed = true;
      unhook();
      handles.close();
      await watches.closeAll();
      await registrar.closeHosted();
      if (p.ownsConnection) await conn.close();
    })();
    return state.closing;
  };
  // Closing a shared connection must first stop the actors this registry hosts on it.
  const unhook = conn.onClose(() => closeImpl());

  const services: Services = {
    backend: conn.backend,
    namespace: ns,
    connection: conn,
    metrics: p.metrics,
    register: (name, factory, ...args) => registrar.register(name, factory, undefined, args),
    registerWithOptions: (name, factory, options, ...args) => registrar.register(name, factory, options, args),
    getOrRegister: (name, factory, ...args) => registrar.getOrRegister(name, factory, undefined, args),
    getOrRegisterWithOptions: (name, factory, options, ...args) => registrar.getOrRegister(name, factory, options, args),
    serve: (name, factory, options, ...args) => registrar.serve(name, factory, options, args),
    registerInstance: (name, instance, options) => registrar.registerInstance(name, instance, options),
    getClient: handles.getClient,
    get: handles.get,
    at: handles.at,
    async has(name) {
      ensureOpen();
      validateName("service", name);
      return (await liveness.liveRecord(name)) !== undefined;
    },
    async list() {
      ensureOpen();
      const names = await records.registeredNames();
      const live = await Promise.all(names.map((n) => liveness.liveRecord(n)));
      return names.filter((_, i) => live[i] !== undefined);
    },
    async describe(name) {
      ensureOpen();
      return (await records.readRecord(validateName("service", name)))?.record;
    },
    status: () => (ensureOpen(), readStatus({ conn, subjects, records, controlTimeoutMs: p.controlTimeoutMs })),
    watch: watches.watch,
    remove: (name) => (ensureOpen(), registrar.remove(validateName("service", name))),
    reset: registrar.reset,
    close: closeImpl,
    [Symbol.asyncDispose]: () => closeImpl(),
  };
  return services;
}
