import { nuid } from "@nats-io/transport-node";
import {
  callableMethods,
  createActorHost,
  createHandle,
  declaredMethods,
  encodeOk,
  instantiate,
  OWNER_LIFECYCLE_METHODS,
  resolveActorOptions,
  unwrapReply,
  type ActorHost,
  type ActorOptions,
  type ActorStats,
  type InstanceInfo,
  type ServiceHandle,
} from "../actor/index.ts";
import { brief, type BusConnection, type Logger, type Subscription } from "../connection/index.ts";
import {
  ClosedError,
  InvalidOptionsError,
  LegacyServiceError,
  ServiceExistsError,
  ServiceNotFoundError,
  ServiceUnavailableError,
  type ActorBusError,
} from "../errors/index.ts";
import { validateName, type Subjects } from "../subjects/index.ts";
import { pingInstance } from "./liveness.ts";
import { decodeRecord, encodeRecord, recordKindOf, type InstanceRecord, type ServiceRecord } from "./records.ts";
import type { RegistryStore } from "./store.ts";
import { handleOptions, watchOptions } from "./handle-options.ts";
import type { HandleOptions, RegistryEvent, RegistryWatch, ServiceClient, ServiceFactory, ServiceStatus, Services, WatchOptions } from "./types.ts";
import { hostname } from "node:os";

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
}

interface Hosted {
  host: ActorHost;
  name: string;
}

export function createRegistry(p: RegistryParams): Services {
  const { conn, store, subjects } = p;
  const ns = subjects.namespace;
  const { codec, transport } = conn;
  const hosted = new Map<string, Hosted>(); // by instanceId
  const watches = new Set<RegistryWatch>();
  let closed = false;
  let closing: Promise<void> | undefined;

  const ensureOpen = () => {
    if (closed) throw new ClosedError(`the registry of namespace "${ns}" is closed`);
  };

  const readRecord = async (name: string) => {
    const e = await store.get(subjects.serviceKey(name));
    const record = e && decodeRecord<ServiceRecord>(e.value);
    return record ? { record, revision: e!.revision } : undefined;
  };

  const instanceIds = async (name: string): Promise<string[]> => {
    const prefix = subjects.instanceKey(name, "");
    return (await store.keys(subjects.instanceKeyFilter(name))).map((k) => k.slice(prefix.length));
  };

  /** One round of pings: the owner first, then every other registered instance. */
  const anyInstanceAnswers = async (name: string, record: ServiceRecord): Promise<{ alive: boolean; deadIds: string[] }> => {
    if ((await pingInstance(conn, subjects, record.owner.instanceId, p.controlTimeoutMs)) !== "dead") return { alive: true, deadIds: [] };
    const ids = (await instanceIds(name)).filter((id) => id !== record.owner.instanceId);
    const states = await Promise.all(ids.map((id) => pingInstance(conn, subjects, id, p.controlTimeoutMs)));
    return { alive: states.some((s) => s !== "dead"), deadIds: ids.filter((_, i) => states[i] === "dead") };
  };

  /**
   * A service is alive while its owner or any registered instance answers. Silence is only
   * believed when it lasts longer than a reconnect: right after a server restart or failover,
   * whoever reconnects first finds everyone else "gone". Dead instances' keys are removed on the
   * way, so the registry heals itself as it is read.
   */
  const isAlive = async (name: string, record: ServiceRecord): Promise<boolean> => {
    if ((await anyInstanceAnswers(name, record)).alive) return true;
    await new Promise((r) => setTimeout(r, p.staleAfterMs));
    const second = await anyInstanceAnswers(name, record);
    if (second.alive) return true;
    await Promise.all(second.deadIds.map((id) => store.delete(subjects.instanceKey(name, id))));
    return false;
  };

  /** The record if the service is alive; a dead one is deleted (only if unchanged since read). */
  const liveRecord = async (name: string): Promise<ServiceRecord | undefined> => {
    const found = await readRecord(name);
    if (!found) return undefined;
    if (await isAlive(name, found.record)) return found.record;
    await store.delete(subjects.serviceKey(name), found.revision);
    await store.delete(subjects.instanceKey(name, found.record.owner.instanceId));
    return undefined;
  };

  const registeredNames = async () =>
    (await store.keys(subjects.serviceKeyFilter())).map((k) => subjects.serviceFromKey(k)!).filter(Boolean).sort();

  /** `names`: what is registered, or why that could not be read (the list is only a hint). */
  const notFoundError = (name: string, names: string[] | { failed: string }): ServiceNotFoundError => {
    const listed = Array.isArray(names) ? (names.length ? names.join(", ") : "(none)") : `(could not list them: ${names.failed})`;
    return new ServiceNotFoundError(`service "${name}" is not registered in namespace "${ns}"; registered: ${listed}`, {
      details: { service: name, namespace: ns, ...(Array.isArray(names) ? { registered: names } : {}) },
    });
  };

  // The record's absence is the registry's answer; a failure to list the other names must not
  // pass for an empty registry.
  const notFound = async (name: string): Promise<ServiceNotFoundError> =>
    notFoundError(name, await registeredNames().catch((err: unknown) => ({ failed: brief(err, 120) })));

  type Lookup = { kind: "registered" } | { kind: "absent"; names: Promise<string[] | { failed: string }> } | { kind: "failed"; cause: unknown };
  /**
   * What a no-responders reply's explanation learned, per name, shared by every handle of this
   * registry: a storm of failed calls (a service restarting under load) makes one registry read
   * per name at a time, and its answer serves the calls of the next EXPLAIN_TTL_MS as well.
   */
  const lookups = new Map<string, { outcome: Promise<Lookup>; settledAt?: number }>();
  const EXPLAIN_TTL_MS = 250;

  const lookup = (name: string): Promise<Lookup> => {
    const known = lookups.get(name);
    if (known && (known.settledAt === undefined || Date.now() - known.settledAt <= EXPLAIN_TTL_MS)) return known.outcome;
    const entry: { outcome: Promise<Lookup>; settledAt?: number } = {
      outcome: (async (): Promise<Lookup> => {
        try {
          if (await readRecord(name)) return { kind: "registered" };
        } catch (cause) {
          return { kind: "failed", cause };
        }
        const names = registeredNames().catch((err: unknown) => ({ failed: brief(err, 120) }));
        return { kind: "absent", names };
      })(),
    };
    lookups.set(name, entry);
    void entry.outcome.then(() => {
      entry.settledAt = Date.now();
      setTimeout(() => lookups.get(name) === entry && lookups.delete(name), EXPLAIN_TTL_MS + 1).unref?.();
    });
    return entry.outcome;
  };

  /** `p`'s value, or undefined once `deadline` (epoch ms) passes. */
  const byDeadline = async <V>(p: Promise<V>, deadline: number): Promise<V | undefined> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([p, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now()))))]);
    } finally {
      clearTimeout(timer);
    }
  };

  /**
   * Turns "nobody listens on the service's subject" into the most useful error, within what is
   * left of the call's deadline: ServiceNotFoundError only when the registry answers that the
   * name is absent; a registry that fails or is too slow to answer leaves the call retryable.
   */
  const explainUnavailable = async (name: string, err: ServiceUnavailableError, deadline: number): Promise<ActorBusError> => {
    const subject = typeof err.details.subject === "string" ? err.details.subject : subjects.call(name);
    const details = { service: name, namespace: ns, subject };
    const budget = Math.max(0, Math.round(deadline - Date.now()));
    const outcome = await byDeadline(lookup(name), deadline);
    if (outcome === undefined) {
      const cause = new ServiceUnavailableError(`the registry of namespace "${ns}" did not answer within ${budget} ms`, { details });
      return new ServiceUnavailableError(`no actor is listening on ${subject}, and the registry could not say within the call's deadline whether "${name}" is registered (it is slow or without a JetStream leader); retry`, { cause, details });
    }
    if (outcome.kind === "registered") return err;
    if (outcome.kind === "absent") return notFoundError(name, (await byDeadline(outcome.names, deadline)) ?? { failed: "no answer within the call's deadline" });
    return new ServiceUnavailableError(`no actor is listening on ${subject}, and the registry cannot say whether "${name}" is registered (${brief(outcome.cause, 200)}); retry`, {
      cause: outcome.cause,
      details,
    });
  };

  const makeHandle = <T>(name: string, timeoutMs: number): ServiceHandle<T> =>
    createHandle<T>({
      conn,
      subjects,
      name,
      timeoutMs,
      // Only reads the registry, bounded by the call's deadline (the handle may pass it; a
      // no-responders reply comes back at once, so the whole deadline is left otherwise).
      explainUnavailable: (err: ServiceUnavailableError, deadline?: number) => explainUnavailable(name, err, deadline ?? Date.now() + timeoutMs),
    });

  const describeInstance = (name: string, instanceId: string): InstanceInfo => ({
    instanceId,
    service: name,
    hostname: hostname(),
    pid: process.pid,
    hostId: p.hostId,
    startedAt: new Date().toISOString(),
  });

  /**
   * Answers pings for an instance that is being claimed but not constructed yet, so a racing
   * registrar that finds our fresh record does not take it for a dead one.
   */
  const claimResponder = (info: InstanceInfo): Subscription =>
    transport.subscribe(subjects.instance(info.instanceId), (msg) => {
      if (msg.reply) msg.respond(encodeOk(codec, info));
    });

  /** `existing`: an object registerInstance() serves without owning it; else one is constructed. */
  const startHost = async (name: string, factory: ServiceFactory, options: ReturnType<typeof resolveActorOptions>, args: unknown[], info: InstanceInfo, existing?: object) => {
    const instance = existing ?? (await instantiate(factory, args));
    const host = createActorHost({
      conn,
      subjects,
      name,
      instance,
      instanceId: info.instanceId,
      hostId: p.hostId,
      options,
      logger: p.logger,
      owned: existing === undefined,
      onRemoteStop: () => void forget(info.instanceId),
    });
    await host.listenControl();
    await host.listenCalls();
    hosted.set(info.instanceId, { host, name });
    await store.put(subjects.instanceKey(name, info.instanceId), encodeRecord(host.info satisfies InstanceRecord));
    return host;
  };

  const forget = (instanceId: string) => hosted.delete(instanceId);

  const buildRecord = (name: string, factory: ServiceFactory, options: ReturnType<typeof resolveActorOptions>, info: InstanceInfo, existing?: object): ServiceRecord => {
    const { metadata, ...rest } = options;
    return {
      name,
      namespace: ns,
      kind: recordKindOf(factory),
      className: (factory as { name?: string } | undefined)?.name || "anonymous", // undefined: an object without a prototype
      methods: existing ? [...callableMethods(existing, OWNER_LIFECYCLE_METHODS)].sort() : declaredMethods(factory),
      registration: existing ? "instance" : "factory",
      owner: info,
      options: rest,
      metadata,
      createdAt: new Date().toISOString(),
    };
  };

  const registerImpl = async <T>(name: string, factory: ServiceFactory, actorOptions: ActorOptions | undefined, args: unknown[], existing?: object): Promise<ServiceHandle<T>> => {
    ensureOpen();
    validateName("service", name);
    const options = resolveActorOptions(actorOptions, `${existing ? "registerInstance" : "registerWithOptions"}("${name}")`);
    const info = describeInstance(name, nuid.next());
    const claim = claimResponder(info);
    try {
      await transport.flush();
      const record = encodeRecord(buildRecord(name, factory, options, info, existing));
      let revision = await store.create(subjects.serviceKey(name), record);
      if (revision === undefined) {
        // Taken: by a live service (the seed's ValueError), or by a dead one we may replace.
        if (await liveRecord(name)) {
          throw new ServiceExistsError(`service "${name}" is already registered in namespace "${ns}"`, { details: { service: name, namespace: ns } });
        }
        revision = await store.create(subjects.serviceKey(name), record);
        if (revision === undefined) throw new ServiceExistsError(`service "${name}" is already registered in namespace "${ns}"`, { details: { service: name, namespace: ns } });
      }
      try {
        await startHost(name, factory, options, args, info, existing);
      } catch (err) {
        await store.delete(subjects.serviceKey(name), revision).catch(() => {});
        throw err;
      }
      return makeHandle<T>(name, options.timeoutMs);
    } finally {
      claim.unsubscribe();
    }
  };

  const serveImpl = async <T>(name: string, factory: ServiceFactory, actorOptions: ActorOptions | undefined, args: unknown[]): Promise<ServiceHandle<T>> => {
    ensureOpen();
    validateName("service", name);
    const options = resolveActorOptions(actorOptions, `serve("${name}")`);
    const info = describeInstance(name, nuid.next());
    const host = await startHost(name, factory, options, args, info);
    const record = encodeRecord(buildRecord(name, factory, options, host.info));
    if ((await store.create(subjects.serviceKey(name), record)) === undefined && !(await liveRecord(name))) {
      await store.create(subjects.serviceKey(name), record);
    }
    return makeHandle<T>(name, options.timeoutMs);
  };

  const registerInstanceImpl = async <T extends object>(name: string, instance: T, actorOptions: ActorOptions | undefined): Promise<ServiceClient<T>> => {
    const where = `registerInstance("${String(name)}", object)`;
    if (typeof instance === "function") {
      throw new InvalidOptionsError(`${where} takes the running object itself; to have the registry construct and own it, use register("${String(name)}", Class, ...args)`);
    }
    if (typeof instance !== "object" || instance === null) throw new InvalidOptionsError(`${where} takes an object whose methods are served (got ${instance === null ? "null" : typeof instance})`);
    if (typeof (instance as { then?: unknown }).then === "function") throw new InvalidOptionsError(`${where} was given a promise: await the object first`);
    return registerImpl<T>(name, instance.constructor as ServiceFactory, actorOptions, [], instance) as unknown as Promise<ServiceClient<T>>;
  };

  const getClientImpl = async <T>(name: string, opts?: HandleOptions): Promise<ServiceClient<T>> => {
    ensureOpen();
    validateName("service", name);
    const { timeoutMs } = handleOptions.parse(opts, `getClient("${name}") options`);
    const record = await liveRecord(name);
    if (!record) throw await notFound(name);
    if (record.registration !== "instance") {
      throw new LegacyServiceError(
        `service "${name}" in namespace "${ns}" is a legacy raw actor: it was registered from a class or factory (${record.className}), so the registry owns it and it has no owner to be a client of; ` +
          `use get("${name}") for a handle to it, or have its owner register the running object with registerInstance("${name}", object)`,
        { details: { service: name, namespace: ns, kind: record.kind, registration: record.registration ?? "factory" } },
      );
    }
    return makeHandle<T>(name, timeoutMs ?? record.options.timeoutMs ?? p.timeoutMs) as unknown as ServiceClient<T>;
  };

  const getImpl = async <T>(name: string, opts?: HandleOptions): Promise<ServiceHandle<T>> => {
    ensureOpen();
    validateName("service", name);
    const { timeoutMs } = handleOptions.parse(opts, `get("${name}") options`);
    const record = await liveRecord(name);
    if (!record) throw await notFound(name);
    return makeHandle<T>(name, timeoutMs ?? record.options.timeoutMs ?? p.timeoutMs);
  };

  const getOrRegisterImpl = async <T>(name: string, factory: ServiceFactory, options: ActorOptions | undefined, args: unknown[]): Promise<ServiceHandle<T>> => {
    // Bounded: each round either finds a live service or wins the atomic create.
    for (let attempt = 0; ; attempt++) {
      try {
        return await getImpl<T>(name);
      } catch (err) {
        if (!(err instanceof ServiceNotFoundError)) throw err;
      }
      try {
        return await registerImpl<T>(name, factory, options, args);
      } catch (err) {
        if (!(err instanceof ServiceExistsError) || attempt >= 3) throw err;
      }
    }
  };

  const stopInstance = async (instanceId: string, graceMs: number) => {
    const local = hosted.get(instanceId);
    if (local) {
      hosted.delete(instanceId);
      await local.host.stop(graceMs);
      return;
    }
    await transport
      .request(subjects.instance(instanceId), codec.encode({ op: "stop", graceMs }), p.controlTimeoutMs + graceMs)
      .catch(() => {}); // already gone, or unreachable: its keys are removed either way
  };

  const removeImpl = async (name: string): Promise<boolean> => {
    const found = await readRecord(name);
    const ids = new Set(await instanceIds(name));
    if (found) ids.add(found.record.owner.instanceId);
    await Promise.all([...ids].map((id) => stopInstance(id, 0)));
    await Promise.all([...ids].map((id) => store.delete(subjects.instanceKey(name, id))));
    if (found) await store.delete(subjects.serviceKey(name));
    return found !== undefined;
  };

  const watchImpl = (options?: WatchOptions): RegistryWatch => {
    ensureOpen();
    const opts = watchOptions.parse(options);
    let stopped = false;
    let closing: Promise<void> | undefined;
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

  const statusImpl = async (): Promise<ServiceStatus[]> => {
    const out: ServiceStatus[] = [];
    for (const name of await registeredNames()) {
      const found = await readRecord(name);
      if (!found) continue;
      const ids = new Set([found.record.owner.instanceId, ...(await instanceIds(name))]);
      const instances = await Promise.all(
        [...ids].map(async (id) => {
          try {
            const s = unwrapReply<InstanceInfo & { stats: ActorStats }>(codec, await transport.request(subjects.instance(id), codec.encode({ op: "stats" }), p.controlTimeoutMs));
            const { stats, ...info } = s;
            return { info: { instanceId: info.instanceId, service: info.service, hostname: info.hostname, pid: info.pid, hostId: info.hostId, startedAt: info.startedAt }, stats };
          } catch (err) {
            return { info: { ...found.record.owner, instanceId: id }, error: (err as Error).message };
          }
        }),
      );
      out.push({ record: found.record, instances });
    }
    return out;
  };

  const closeImpl = () => {
    closing ??= (async () => {
      closed = true;
      unhook();
      await Promise.all([...watches].map((w) => w.close()));
      const mine = [...hosted.entries()];
      hosted.clear();
      await Promise.all(
        mine.map(async ([id, { host, name }]) => {
          await host.stop();
          await store.delete(subjects.instanceKey(name, id)).catch(() => {});
          // The record goes with its last instance; other hosts keep it alive otherwise.
          const found = await readRecord(name).catch(() => undefined);
          if (found?.record.owner.instanceId === id && !(await isAlive(name, found.record).catch(() => true))) {
            await store.delete(subjects.serviceKey(name), found.revision).catch(() => {});
          }
        }),
      );
      if (p.ownsConnection) await conn.close();
    })();
    return closing;
  };
  // Closing a shared connection must first stop the actors this registry hosts on it.
  const unhook = conn.onClose(() => closeImpl());

  const services: Services = {
    backend: conn.backend,
    namespace: ns,
    connection: conn,
    register: (name, factory, ...args) => registerImpl(name, factory, undefined, args),
    registerWithOptions: (name, factory, options, ...args) => registerImpl(name, factory, options, args),
    getOrRegister: (name, factory, ...args) => getOrRegisterImpl(name, factory, undefined, args),
    getOrRegisterWithOptions: (name, factory, options, ...args) => getOrRegisterImpl(name, factory, options, args),
    serve: (name, factory, options, ...args) => serveImpl(name, factory, options, args),
    registerInstance: (name, instance, options) => registerInstanceImpl(name, instance, options),
    getClient: getClientImpl,
    get: getImpl,
    at: <T>(name: string, opts?: HandleOptions) => {
      validateName("service", name);
      return makeHandle<T>(name, handleOptions.parse(opts, `at("${name}") options`).timeoutMs ?? p.timeoutMs);
    },
    async has(name) {
      ensureOpen();
      validateName("service", name);
      return (await liveRecord(name)) !== undefined;
    },
    async list() {
      ensureOpen();
      const names = await registeredNames();
      const live = await Promise.all(names.map((n) => liveRecord(n)));
      return names.filter((_, i) => live[i] !== undefined);
    },
    async describe(name) {
      ensureOpen();
      return (await readRecord(validateName("service", name)))?.record;
    },
    status: () => (ensureOpen(), statusImpl()),
    watch: watchImpl,
    remove: (name) => (ensureOpen(), removeImpl(validateName("service", name))),
    async reset() {
      ensureOpen();
      const names = await registeredNames();
      await Promise.all(names.map((n) => removeImpl(n)));
      // Instances whose service record is already gone (half-finished registrations).
      for (const key of await store.keys(subjects.instanceKeyFilter())) {
        const id = key.slice(key.lastIndexOf(".") + 1);
        await stopInstance(id, 0);
        await store.delete(key);
      }
    },
    close: closeImpl,
    [Symbol.asyncDispose]: () => closeImpl(),
  };
  return services;
}
