import type { BusConnection, Subscription } from "../connection/index.ts";
import { encodeRouteTable, type RouteEntry, type RouteTable } from "../registry/direct-routes.ts";
import type { Subjects } from "../subjects/index.ts";
import type { ControllerState } from "./controller-state.ts";
import type { ResolvedServiceOptions } from "./options.ts";
import type { Replica } from "./replica-state.ts";

/**
 * Tells registry handles where the replicas are (src/registry/direct-routes.ts): publishes the
 * route table when a replica starts, dies, leaves or rejoins routing or changes version, and
 * every REFRESH_MS anyway (a handle that missed one, or joined late, catches up; a handle that
 * hears nothing for three periods stops routing on its own).
 */
export interface RouteAnnouncer {
  listen(): Subscription;
  /** Publishes a last table that stops handles routing: they send to the registry face, which answers "shut down". */
  stop(): void;
}

export interface RouteAnnouncerParams {
  state: ControllerState;
  conn: BusConnection;
  subjects: Subjects;
  options: ResolvedServiceOptions;
  versionOf(r: Replica): number | undefined;
}

const REFRESH_MS = 1_000;

export function createRouteAnnouncer(p: RouteAnnouncerParams): RouteAnnouncer {
  const { state: s, conn, subjects, options: o } = p;
  const { codec, transport } = conn;
  // Handles pick among replicas as the controller's router would; a function router reads the
  // call in this process, and a replica of several processes takes each call on all of them.
  const direct = o.routing !== "queue-group" && typeof o.router === "string" && o.procs === 1;
  let epoch = 0;
  let last = "";
  let scheduled = false;
  let stopped = false;

  const entries = (): RouteEntry[] =>
    s.replicas
      .filter((r) => r.state === "healthy" && r.subjects.length > 0)
      .map((r) => [r.index, r.generation, r.subjects[0]!, !r.suspect && !r.updating && !r.ejected ? 1 : 0, p.versionOf(r) ?? null]);

  const table = (replicas: RouteEntry[]): RouteTable => ({
    v: 1,
    controller: s.controllerId,
    epoch,
    direct: direct && s.state === "running",
    router: typeof o.router === "string" ? o.router : "least-loaded",
    capacity: o.maxConcurrency + o.maxPending,
    retries: o.maxTaskRetries,
    replicas,
    refreshMs: REFRESH_MS,
  });

  // A stopping service keeps listing its replicas (the calls handles have there still finish)
  // but no longer lets handles route: new calls reach the registry face, which refuses them.
  const current = () => {
    const replicas = entries();
    return { replicas, shape: `${s.state}:${JSON.stringify(replicas)}` };
  };

  const publish = (force: boolean) => {
    if (stopped) return;
    const { replicas, shape } = current();
    if (shape !== last) {
      last = shape;
      epoch++;
    } else if (!force) {
      return;
    }
    transport.publish(subjects.routes(s.name), encodeRouteTable(codec, table(replicas)));
  };

  // Several changes in one turn (a restart marks, bumps and notifies) make one table.
  const onChange = () => {
    if (scheduled || stopped) return;
    scheduled = true;
    queueMicrotask(() => {
      scheduled = false;
      publish(false);
    });
  };

  let timer: ReturnType<typeof setInterval> | undefined;

  return {
    listen() {
      timer = setInterval(() => publish(true), REFRESH_MS);
      timer.unref?.();
      s.changeWaiters.add(onChange);
      publish(true);
      return transport.subscribe(subjects.routesRequest(s.name), (msg) => {
        if (!msg.reply) return;
        const { replicas, shape } = current();
        if (shape !== last) {
          last = shape;
          epoch++;
        }
        msg.respond(encodeRouteTable(codec, table(replicas)));
      });
    },
    stop() {
      if (stopped) return;
      clearInterval(timer);
      s.changeWaiters.delete(onChange);
      publish(true);
      stopped = true;
    },
  };
}
