import { nuid } from "@nats-io/transport-node";
import { declaredMethods } from "../actor/index.ts";
import type { Subscription } from "../connection/index.ts";
import { ActorBusError, InvalidOptionsError, ServiceExistsError } from "../errors/index.ts";
import { getServices, type Services } from "../registry/index.ts";
import { subjectsFor } from "../subjects/index.ts";
import { createControllerState, notifyChange } from "./controller-state.ts";
import { forwarderClass } from "./forwarder.ts";
import { chooseLauncher } from "./launchers.ts";
import type { ModuleRef } from "./module-ref.ts";
import type { ResolvedServiceOptions } from "./options.ts";
import { createReplicaSupervisor, type LaunchableClass } from "./replica-supervisor.ts";
import { sinkOf } from "../metrics/index.ts";
import { watchReplicas } from "./metrics.ts";
import { createServiceReporter } from "./reporter.ts";
import { createOutlierEjection } from "./outlier-ejection.ts";
import { createRoutedCalls, type RouteOptions, type SessionState } from "./routed-calls.ts";
import { createRollingUpdates } from "./rolling.ts";
import { createRouteAnnouncer } from "./route-announcer.ts";
import { createReplicaVersions } from "./versions.ts";
import type { ResolvedCallOptions, ResolvedRollingOptions } from "../call/index.ts";
import type { ServiceReport } from "./types.ts";

export interface ControllerParams {
  cls: LaunchableClass;
  /** The exported class (what replicas construct). */
  base: Function;
  ref: ModuleRef;
  options: ResolvedServiceOptions;
  args: unknown[];
  name: string;
}

/**
 * The controller of one service, in the process that launched it (TorchForge's Service):
 * places and supervises replicas, routes calls, keeps sessions, answers the registry (as the
 * service's owner instance), its status subject and $SRV.
 */
export interface ServiceController {
  readonly name: string;
  readonly namespace: string;
  readonly id: string;
  call(method: string, args: unknown[], opts?: RouteOptions): Promise<unknown>;
  fanout(method: string, args: unknown[], opts?: RouteOptions): Promise<unknown[]>;
  /** The method on every healthy replica in turn, each out of routing meanwhile (rolling.ts). */
  rolling(method: string, args: unknown[], call: ResolvedCallOptions | undefined, options: ResolvedRollingOptions): Promise<unknown[]>;
  openSession(rebind: boolean): SessionState;
  closeSession(s: SessionState): void;
  report(): ServiceReport;
  shutdown(): Promise<void>;
}

export async function launchService(p: ControllerParams): Promise<ServiceController> {
  const { options: o } = p;
  const ownsServices = !o.services;
  const services: Services = o.services ?? (await getServices({ namespace: o.namespace ?? "default", servers: o.servers }));
  try {
    return await startController(p, services, ownsServices);
  } catch (err) {
    if (ownsServices) await services.close().catch(() => {});
    throw err;
  }
}

/**
 * Wires the parts of a controller (replica supervisor, routed calls, reporter) around one shared
 * state, registers the service's registry face, starts the replicas and owns the shutdown.
 */
async function startController(p: ControllerParams, services: Services, ownsServices: boolean): Promise<ServiceController> {
  const { options: o, name, cls } = p;
  const conn = services.connection;
  if (conn.backend !== "nats" || !conn.nc) {
    throw new InvalidOptionsError(`${cls.name}.asService() needs the NATS backend: replicas run in their own processes and reach the caller over NATS`);
  }
  const subjects = subjectsFor(services.namespace);
  const { transport } = conn;
  const namespace = services.namespace;
  const controlTimeoutMs = 2_000;
  const methods = declaredMethods(p.base);

  // Where the replicas go: agents when there are any (or required), else this machine.
  const { launcher, plan } = await chooseLauncher({ conn, subjects, options: o, service: name, controlTimeoutMs, onExit: (ev) => supervisor.onProcExit(ev) });

  const s = createControllerState(name, o.numReplicas);
  const ejection = createOutlierEjection({ state: s, conn, subjects, options: o.outlierEjection });
  const supervisor = createReplicaSupervisor({ state: s, conn, subjects, namespace, launcher, cls, ref: p.ref, options: o, args: p.args, controlTimeoutMs, onStall: ejection.stalled, onHeard: ejection.heard });
  const versions = createReplicaVersions({ state: s, transport, codec: conn.codec, subjects, procs: o.procs });
  const reporter = createServiceReporter({ state: s, conn, subjects, namespace, className: p.base.name, placement: launcher.mode, options: o, methods, versionOf: versions.of, rolling: () => rolling.current() });
  const calls = createRoutedCalls({ state: s, conn, subjects, options: o, recordMethod: reporter.recordMethod, unreachable: supervisor.unreachable, versions, outcomes: ejection, rollRelayed: (job, payload, ro) => rolling.rollRelayed(job, payload, ro) });
  const routes = createRouteAnnouncer({ state: s, conn, subjects, options: o, versionOf: versions.of });
  const rolling = createRollingUpdates({ state: s, options: o, prepare: calls.prepare, prepareRelayed: calls.prepareRelayed, recordMethod: reporter.recordMethod });

  // --- registration: the controller is the registry's owner instance of the service ---------

  let shutdownPromise: Promise<void> | undefined;
  const Forwarder = forwarderClass(p.base.name, methods, calls.relay, () => (shutdownPromise ? undefined : shutdown(true)));
  try {
    await services.registerWithOptions(name, Forwarder, {
      // The router bounds calls per replica; the forwarder only relays them.
      maxConcurrency: 1_000_000,
      maxPending: 0,
      timeoutMs: o.timeoutMs,
      drainTimeoutMs: o.drainTimeoutMs,
      metadata: { ...o.metadata, kind: "service", replicas: String(o.numReplicas), procs: String(o.procs), module: p.ref.moduleUrl },
    });
  } catch (err) {
    if (err instanceof ServiceExistsError) {
      err.message += `; pass { meshName: "another-name" } to options() to run another ${cls.name} service`;
    }
    throw err;
  }
  const record = await services.describe(name);
  s.controllerId = record?.owner.instanceId ?? nuid.next();

  const subs: Subscription[] = [supervisor.listen(), versions.listen(), routes.listen()];
  const unwatch = watchReplicas(sinkOf(services.metrics), namespace, name, s.replicas);
  reporter.listen();
  await transport.flush();
  supervisor.startHeartbeats();

  const shutdown = (fromRegistry = false): Promise<void> => {
    shutdownPromise ??= (async () => {
      s.state = "stopping";
      notifyChange(s);
      routes.stop();
      supervisor.stopHeartbeats();
      ejection.stop();
      await calls.drain();
      for (const sub of subs.splice(0)) sub.unsubscribe();
      reporter.stop();
      await supervisor.stopAll();
      s.state = "stopped";
      unwatch();
      if (!fromRegistry) {
        await services.remove(name).catch(() => {});
        if (ownsServices) await services.close().catch(() => {});
      }
    })();
    // A registry-initiated stop runs inside the registry's own teardown of our forwarder, which
    // close() would wait for: close afterwards.
    if (fromRegistry && ownsServices) void shutdownPromise.then(() => services.close()).catch(() => {});
    return shutdownPromise;
  };

  const controller: ServiceController = {
    name,
    namespace,
    get id() {
      return s.controllerId;
    },
    call: calls.call,
    fanout: calls.fanout,
    rolling: rolling.roll,
    openSession: calls.openSession,
    closeSession: calls.closeSession,
    report: reporter.report,
    shutdown: () => shutdown(false),
  };

  // Every replica up, or nothing left behind.
  const results = await Promise.allSettled(s.replicas.map((r, i) => supervisor.startReplica(r, plan[i], 0)));
  const failed = results.findIndex((x) => x.status === "rejected");
  if (failed >= 0) {
    const err = (results[failed] as PromiseRejectedResult).reason;
    await shutdown(false);
    if (err instanceof ActorBusError || err instanceof Error) {
      err.message = `replica ${failed} of "${name}" failed to start: ${err.message}`;
      throw err;
    }
    throw new ActorBusError(`replica ${failed} of "${name}" failed to start: ${String(err)}`);
  }
  return controller;
}
