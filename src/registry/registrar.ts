import { nuid } from "@nats-io/transport-node";
import { hostname } from "node:os";
import {
  callableMethods,
  createActorHost,
  declaredMethods,
  encodeOk,
  instantiate,
  OWNER_LIFECYCLE_METHODS,
  resolveActorOptions,
  type ActorHost,
  type ActorOptions,
  type InstanceInfo,
  type ServiceHandle,
} from "../actor/index.ts";
import type { BusConnection, Logger, Subscription } from "../connection/index.ts";
import type { MetricsSink } from "../metrics/index.ts";
import { InvalidOptionsError, ServiceExistsError, ServiceNotFoundError } from "../errors/index.ts";
import { validateName, type Subjects } from "../subjects/index.ts";
import type { RegistryHandles } from "./handles.ts";
import type { ServiceLiveness } from "./liveness.ts";
import type { RecordReads } from "./record-reads.ts";
import { encodeRecord, recordKindOf, type InstanceRecord, type ServiceRecord } from "./records.ts";
import type { RegistryStore } from "./store.ts";
import type { ServiceClient, ServiceFactory } from "./types.ts";

/**
 * Registration and the instances this process hosts: claims a name (replacing a dead owner),
 * starts actor hosts, and stops instances wherever they run when a service is removed.
 */
export interface Registrar {
  register<T>(name: string, factory: ServiceFactory, options: ActorOptions | undefined, args: unknown[]): Promise<ServiceHandle<T>>;
  registerInstance<T extends object>(name: string, instance: T, options: ActorOptions | undefined): Promise<ServiceClient<T>>;
  getOrRegister<T>(name: string, factory: ServiceFactory, options: ActorOptions | undefined, args: unknown[]): Promise<ServiceHandle<T>>;
  serve<T>(name: string, factory: ServiceFactory, options: ActorOptions | undefined, args: unknown[]): Promise<ServiceHandle<T>>;
  remove(name: string): Promise<boolean>;
  reset(): Promise<void>;
  /** Stops what this process hosts, deregistering it (a record goes with its last instance). */
  closeHosted(): Promise<void>;
}

export interface RegistrarParams {
  conn: BusConnection;
  store: RegistryStore;
  subjects: Subjects;
  records: RecordReads;
  liveness: ServiceLiveness;
  handles: RegistryHandles;
  /** Identity of this process as a host. */
  hostId: string;
  /** Deadline for stop requests. */
  controlTimeoutMs: number;
  /** Passed to every actor host this registry starts. */
  logger?: Logger;
  metrics: MetricsSink;
  /** Throws ClosedError once the registry is closed. */
  ensureOpen(): void;
}

interface Hosted {
  host: ActorHost;
  name: string;
}

export function createRegistrar(p: RegistrarParams): Registrar {
  const { conn, store, subjects, ensureOpen } = p;
  const ns = subjects.namespace;
  const { codec, transport } = conn;
  const { readRecord, instanceIds, registeredNames } = p.records;
  const { isAlive, liveRecord } = p.liveness;
  const { makeHandle, get: getImpl } = p.handles;
  const hosted = new Map<string, Hosted>(); // by instanceId

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
      metrics: p.metrics,
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
      return makeHandle<T>(name, options.timeoutMs, undefined, recordKindOf(factory));
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
    return makeHandle<T>(name, options.timeoutMs, undefined, recordKindOf(factory));
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

  return {
    register: registerImpl,
    registerInstance: registerInstanceImpl,
    getOrRegister: getOrRegisterImpl,
    serve: serveImpl,
    remove: removeImpl,
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
    async closeHosted() {
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
    },
  };
}
