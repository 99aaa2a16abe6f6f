import { defaultHostId } from "../agent/index.ts";
import { InvalidOptionsError } from "../errors/index.ts";
import { launchService } from "./controller.ts";
import { isReplicaRef } from "./replica-supervisor.ts";
import { callerModuleUrl, resolveModuleRef } from "./module-ref.ts";
import { checkServiceOptions, resolveServiceOptions, SERVICE_DEFAULTS, type ServiceOptions } from "./options.ts";
import { controllerOf, createServiceProxy } from "./proxy.ts";
import type { LaunchContext, ServiceProxy } from "./types.ts";

const CONFIG = Symbol.for("actorbus.actorOptions");
const CALLERS = Symbol.for("actorbus.callerModules");

type ActorCtor = new (...args: any[]) => Actor;

/** ForgeActor's class attributes: a subclass may declare them, options() sets them. */
const CLASS_ATTRIBUTES = ["procs", "hosts", "withGpus", "numReplicas", "meshName"] as const;

/** What a class returned by options() exposes: every configured key, as a read-only static. */
export type ConfiguredActor<C> = C & { readonly [K in keyof ServiceOptions]: ServiceOptions[K] };

/**
 * The options a class launches with. Class attributes are read as ForgeActor's as_service()
 * reads them, so a subclass declaring `static procs = 2` launches two processes; on a class
 * from options() they hold its configuration.
 */
function configOf(cls: Function): ServiceOptions {
  const attributes = Object.fromEntries(CLASS_ATTRIBUTES.map((k) => [k, (cls as unknown as Record<string, unknown>)[k]]));
  return { ...((cls as unknown as Record<symbol, ServiceOptions>)[CONFIG] ?? {}), ...attributes };
}

const intEnv = (v: string | undefined, dflt: number) => {
  const n = Number(v);
  return v !== undefined && Number.isInteger(n) ? n : dflt;
};

/** The class a configured subclass was made from: the one the module exports. */
function exportedClass(cls: Function): Function {
  let c = cls;
  while (Object.hasOwn(c, CONFIG)) c = Object.getPrototypeOf(c) as Function;
  return c;
}

const defaultName = (cls: Function) => cls.name.toLowerCase().replace(/[^a-z0-9_-]/g, "_") || "actor";

/**
 * Base class of actors that run as services of replicas (TorchForge's ForgeActor). Public
 * methods (not starting with "_") are the endpoints. Each replica process constructs the class
 * with the constructor arguments given to asService()/asActor(); if it defines `setup()`, that
 * is awaited before the replica takes calls.
 *
 * The class must be exported from its module; declare `static module = import.meta.url` so
 * replica processes can import it from wherever it is launched.
 */
export class Actor {
  /** The module that exports the class (`static module = import.meta.url`). */
  declare static module?: string;

  // ForgeActor's class attributes with its defaults. A subclass may declare its own (as a
  // ForgeActor subclass sets `procs = 2`); options() values win over both.
  /** Processes per replica. */
  static readonly procs: number = SERVICE_DEFAULTS.procs;
  /** Hosts one replica spans; null: as few as fit. */
  static readonly hosts: number | null = SERVICE_DEFAULTS.hosts;
  /** One GPU per process. */
  static readonly withGpus: boolean = SERVICE_DEFAULTS.withGpus;
  /** Replicas launched by asService(). */
  static readonly numReplicas: number = SERVICE_DEFAULTS.numReplicas;
  /** The service's registry name; null: the class name in lower case. */
  static readonly meshName: string | null = SERVICE_DEFAULTS.meshName;

  /** This process's rank within its replica (0..size-1). */
  readonly rank: number;
  /** Processes in the replica (the `procs` option). */
  readonly size: number;
  /** Host id of the agent (or machine) running this process. */
  readonly host: string;

  constructor() {
    // Replica processes are started with these set; elsewhere an actor is rank 0 of 1, here.
    this.rank = intEnv(process.env.ACTORBUS_RANK, 0);
    this.size = intEnv(process.env.ACTORBUS_SIZE, 1);
    this.host = process.env.ACTORBUS_HOST_ID ?? defaultHostId();
  }

  /**
   * A subclass carrying these options (merged over the ones already configured). Each call
   * makes a separate subclass, so several configurations of one class coexist. As with
   * ForgeActor, the configured values are readable on it: `Counter.options({ procs: 2 }).procs`.
   */
  static options<C extends ActorCtor>(this: C, options: ServiceOptions): ConfiguredActor<C> {
    const self = this as unknown as Function;
    if (self === Actor) throw new InvalidOptionsError("options() is called on a subclass of Actor, e.g. Counter.options({ numReplicas: 2 })");
    checkServiceOptions(options, `${self.name}.options()`);
    const merged = { ...((self as unknown as Record<symbol, ServiceOptions>)[CONFIG] ?? {}), ...options };
    const Configured = class extends (this as ActorCtor) {};
    Object.defineProperty(Configured, "name", { value: self.name });
    Object.defineProperty(Configured, CONFIG, { value: merged });
    Object.defineProperty(Configured, CALLERS, { value: [callerModuleUrl(), ...((self as unknown as Record<symbol, string[]>)[CALLERS] ?? [])] });
    // Read-only: keys other than the class attributes launch from CONFIG, so an assigned value
    // would be reported but not used; options() again makes a new configuration.
    // An explicit undefined means "the default" (as at launch), not the parent's value.
    for (const [k, v] of Object.entries(merged)) {
      const value = v === undefined && (CLASS_ATTRIBUTES as readonly string[]).includes(k) ? SERVICE_DEFAULTS[k as (typeof CLASS_ATTRIBUTES)[number]] : v;
      Object.defineProperty(Configured, k, { value, enumerable: true, writable: false, configurable: false });
    }
    resolveServiceOptions(configOf(Configured), `${self.name}.options()`); // fail here, not at launch
    return Configured as unknown as ConfiguredActor<C>;
  }

  /** Launches `numReplicas` replicas and returns the service: routed endpoints, fanout, sessions, shutdown(). */
  static async asService<C extends ActorCtor>(this: C, ...args: ConstructorParameters<C>): Promise<ServiceProxy<InstanceType<C>>> {
    return launch(this as unknown as Function, args, false, callerModuleUrl()) as Promise<ServiceProxy<InstanceType<C>>>;
  }

  /** Launches one replica (of `procs` processes) and returns it; stop it with `Class.shutdown(actor)`. */
  static async asActor<C extends ActorCtor>(this: C, ...args: ConstructorParameters<C>): Promise<ServiceProxy<InstanceType<C>>> {
    return launch(this as unknown as Function, args, true, callerModuleUrl()) as Promise<ServiceProxy<InstanceType<C>>>;
  }

  /**
   * How one replica is provisioned (called for every start and restart). Override to prepare
   * arguments or do work around the spawn; the default starts the processes as placed.
   */
  static async launch(ctx: LaunchContext): Promise<void> {
    await ctx.spawn();
  }

  /**
   * Stops a replica (the service calls it for each one on shutdown) or an actor/service from
   * asActor()/asService(). Override to say goodbye first; call super.shutdown(target) last.
   */
  static async shutdown(target: unknown): Promise<void> {
    if (isReplicaRef(target)) return target.stop();
    const c = controllerOf(target);
    if (!c) throw new InvalidOptionsError("shutdown() takes an actor or service returned by asActor()/asService()");
    await c.shutdown();
  }
}

async function launch(cls: Function, args: unknown[], single: boolean, caller: string | undefined): Promise<unknown> {
  if (cls === Actor) throw new InvalidOptionsError("asService()/asActor() are called on a subclass of Actor, e.g. Counter.asService()");
  const base = exportedClass(cls);
  const configured = configOf(cls);
  const where = `${base.name}.options()`;
  const options = resolveServiceOptions(single ? { ...configured, numReplicas: 1 } : configured, where);
  const declared = (base as { module?: unknown }).module;
  const ref = await resolveModuleRef(base, [typeof declared === "string" ? declared : undefined, caller, ...((cls as unknown as Record<symbol, string[]>)[CALLERS] ?? [])]);
  const unique = Math.random().toString(36).slice(2, 8);
  const name = options.meshName ?? (single ? `${defaultName(base)}-${unique}` : defaultName(base));
  const controller = await launchService({ cls: cls as unknown as Parameters<typeof launchService>[0]["cls"], base, ref, options, args, name });
  return createServiceProxy(controller);
}
