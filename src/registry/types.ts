import type { ActorOptions, ServiceHandle } from "../actor/index.ts";
import type { ActorStats, InstanceInfo } from "../actor/index.ts";
import type { BusConnection } from "../connection/index.ts";
import type { Metrics } from "../metrics/index.ts";
import type { ServiceRecord } from "./records.ts";

/** A class (constructed with `new`) or a function returning the service object (may be async). */
export type ServiceFactory = (abstract new (...args: any[]) => object) | ((...args: any[]) => object | Promise<object>);
export type FactoryArgs<F> = F extends abstract new (...args: infer A) => any ? A : F extends (...args: infer A) => any ? A : never;
export type FactoryInstance<F> = F extends abstract new (...args: any[]) => infer I ? I : F extends (...args: any[]) => infer R ? Awaited<R> : never;

/** Methods only the owner of a registerInstance() object may call (the host refuses them remotely). */
export type OwnerLifecycleMethod = "shutdown" | "close" | "dispose";

/** A handle to an object served with registerInstance(): its methods, without its lifecycle. */
export type ServiceClient<T> = ServiceHandle<Omit<T, OwnerLifecycleMethod>>;

export interface HandleOptions {
  /** Deadline of each call through this handle; default: the service's timeoutMs. */
  timeoutMs?: number;
}

export interface WatchOptions {
  /** Yield a `registered` event for every service already registered, first. Default false. */
  includeExisting?: boolean;
}

export type RegistryEvent =
  | { type: "registered"; name: string; record: ServiceRecord; revision: number }
  | { type: "removed"; name: string; revision: number };

/**
 * Registry changes, for `for await`. The watch starts when created; errors (the registry bucket
 * unreachable, say) surface from the iteration. Leaving the loop closes it.
 */
export interface RegistryWatch extends AsyncIterable<RegistryEvent>, AsyncDisposable {
  /**
   * Resolves once every later change will be seen (on NATS the KV watch takes a round trip to
   * set up); rejects as the iteration would. Await it before making a change this watch must see.
   */
  ready(): Promise<void>;
  /** Stops the watch; a running iteration ends. Idempotent. */
  close(): Promise<void>;
}

export interface InstanceStatus {
  info: InstanceInfo;
  stats?: ActorStats;
  /** Why stats could not be read (e.g. the instance is busy or gone). */
  error?: string;
}

export interface ServiceStatus {
  record: ServiceRecord;
  instances: InstanceStatus[];
}

/**
 * A namespace's service registry (TorchRL's ServiceBase, on NATS). Services registered by any
 * process are visible to every process using the same backend and namespace.
 */
export interface Services extends AsyncDisposable {
  readonly backend: "nats" | "local";
  readonly namespace: string;
  readonly connection: BusConnection;
  /** The metrics this registry's hosts and handles record into (getServices({ metrics })), if any. */
  readonly metrics: Metrics | undefined;

  /** Registers `name` and hosts an instance in this process. ServiceExistsError if taken. */
  register<F extends ServiceFactory>(name: string, factory: F, ...args: FactoryArgs<F>): Promise<ServiceHandle<FactoryInstance<F>>>;
  /** register() with actor options (maxConcurrency, maxPending, timeoutMs, ...) kept apart from constructor args. */
  registerWithOptions<F extends ServiceFactory>(name: string, factory: F, options: ActorOptions, ...args: FactoryArgs<F>): Promise<ServiceHandle<FactoryInstance<F>>>;
  /** Ray's get_if_exists: the existing service, or this one registered; race-free across workers. */
  getOrRegister<F extends ServiceFactory>(name: string, factory: F, ...args: FactoryArgs<F>): Promise<ServiceHandle<FactoryInstance<F>>>;
  getOrRegisterWithOptions<F extends ServiceFactory>(name: string, factory: F, options: ActorOptions, ...args: FactoryArgs<F>): Promise<ServiceHandle<FactoryInstance<F>>>;
  /**
   * Hosts one more instance of `name` in this process (registering it if absent). Instances
   * share calls through the NATS queue group: a way to scale a service by hand.
   */
  serve<F extends ServiceFactory>(name: string, factory: F, options: ActorOptions, ...args: FactoryArgs<F>): Promise<ServiceHandle<FactoryInstance<F>>>;

  /**
   * Serves an object that is already running, without the registry owning it: remove(),
   * reset() and close() stop serving it but never call its shutdown/close/dispose or
   * Symbol.asyncDispose, and remote callers cannot call those either (MethodNotFoundError).
   * The object stays usable in this process. ServiceExistsError if the name is taken.
   */
  registerInstance<T extends object>(name: string, instance: T, options?: ActorOptions): Promise<ServiceClient<T>>;
  /**
   * A handle to a service registered with registerInstance(). LegacyServiceError for a legacy
   * raw actor (registered from a class or factory: use get()); ServiceNotFoundError if absent.
   */
  getClient<T = any>(name: string, options?: HandleOptions): Promise<ServiceClient<T>>;

  /** A handle to a live service; ServiceNotFoundError (listing what exists) otherwise. */
  get<T = any>(name: string, options?: HandleOptions): Promise<ServiceHandle<T>>;
  /** The dict-like form `services["name"]`: a handle now, resolved on its first call. */
  at<T = any>(name: string, options?: HandleOptions): ServiceHandle<T>;
  /** `"name" in services`: registered and alive. */
  has(name: string): Promise<boolean>;
  /** Sorted names of the live services. */
  list(): Promise<string[]>;
  /** The registry record of a service, or undefined. */
  describe(name: string): Promise<ServiceRecord | undefined>;
  /** Records plus live stats of every instance (what `actorbus ls` prints). */
  status(): Promise<ServiceStatus[]>;
  /**
   * Registry changes as they happen (and the current services first, with includeExisting):
   * `for await (const ev of services.watch())`. ClosedError once the registry is closed.
   */
  watch(options?: WatchOptions): RegistryWatch;

  /** Stops every instance of one service (wherever it runs) and removes it. */
  remove(name: string): Promise<boolean>;
  /** Stops every service of the namespace, wherever it runs, and empties the registry. */
  reset(): Promise<void>;
  /** Stops what this process hosts (finishing in-flight calls), deregisters it, closes the connection if owned. */
  close(): Promise<void>;
}
