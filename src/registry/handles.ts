import { createHandle, type ServiceHandle } from "../actor/index.ts";
import { brief, type BusConnection } from "../connection/index.ts";
import type { MetricsSink } from "../metrics/index.ts";
import { LegacyServiceError, ServiceNotFoundError, ServiceUnavailableError, type ActorBusError } from "../errors/index.ts";
import { validateName, type Subjects } from "../subjects/index.ts";
import { handleOptions } from "./handle-options.ts";
import { createDirectRoutes, type DirectRoutes } from "./direct-routes.ts";
import type { ServiceLiveness } from "./liveness.ts";
import type { RecordReads } from "./record-reads.ts";
import type { HandleOptions, ServiceClient } from "./types.ts";

/** Handles to the registry's services: looked up (get, getClient) or made at once (at). */
export interface RegistryHandles {
  /** A handle to `name` whose "nobody listens" failures the registry explains. */
  makeHandle<T>(name: string, timeoutMs: number, methods?: readonly string[], kind?: string): ServiceHandle<T>;
  get<T>(name: string, opts?: HandleOptions): Promise<ServiceHandle<T>>;
  at<T>(name: string, opts?: HandleOptions): ServiceHandle<T>;
  getClient<T>(name: string, opts?: HandleOptions): Promise<ServiceClient<T>>;
  /** Stops following the route tables of replicated services. */
  close(): void;
}

export interface RegistryHandlesParams {
  conn: BusConnection;
  subjects: Subjects;
  records: RecordReads;
  liveness: ServiceLiveness;
  /** Default deadline of handles when neither the handle nor the service sets one. */
  timeoutMs: number;
  /** Throws ClosedError once the registry is closed. */
  ensureOpen(): void;
  /** Where handles count and time their calls. */
  metrics: MetricsSink;
}

export function createRegistryHandles(p: RegistryHandlesParams): RegistryHandles {
  const { conn, subjects, ensureOpen } = p;
  const ns = subjects.namespace;
  const { readRecord, registeredNames } = p.records;
  const { liveRecord } = p.liveness;

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

  // One route-table subscription per replicated service, shared by every handle of this registry.
  const routes = new Map<string, DirectRoutes>();
  let routesClosed = false;
  const directRoutes = (name: string): DirectRoutes | undefined => {
    let d = routes.get(name);
    if (!d && !routesClosed) routes.set(name, (d = createDirectRoutes({ conn, subjects, service: name })));
    return d;
  };
  // Only a replicated service's controller publishes routes; a handle made at once (at()) does
  // not know the kind and listens in case (one subscription per name).
  const directFor = (name: string, kind: string | undefined) =>
    conn.backend === "nats" && (kind === undefined || kind === "service") ? () => directRoutes(name) : undefined;

  // A factory function declares no methods: an empty list would put every call under "other".
  const makeHandle = <T>(name: string, timeoutMs: number, methods?: readonly string[], kind?: string): ServiceHandle<T> =>
    createHandle<T>({
      direct: directFor(name, kind),
      // Known from the record a lookup read; a handle made at once (at()) reads it when it rolls.
      isReplicated: async () => (kind ?? (await readRecord(name))?.record.kind) === "service",
      conn,
      subjects,
      name,
      timeoutMs,
      metrics: p.metrics,
      methods: methods?.length ? methods : undefined,
      // Only reads the registry, bounded by the call's deadline (the handle may pass it; a
      // no-responders reply comes back at once, so the whole deadline is left otherwise).
      explainUnavailable: (err: ServiceUnavailableError, deadline: number) => explainUnavailable(name, err, deadline),
    });

  /** The record of a live service and the deadline its handle gets; ServiceNotFoundError otherwise. */
  const liveService = async (name: string, opts: HandleOptions | undefined, what: string) => {
    ensureOpen();
    validateName("service", name);
    const { timeoutMs } = handleOptions.parse(opts, `${what}("${name}") options`);
    const record = await liveRecord(name);
    if (!record) throw await notFound(name);
    return { record, timeoutMs: timeoutMs ?? record.options.timeoutMs ?? p.timeoutMs };
  };

  const getClientImpl = async <T>(name: string, opts?: HandleOptions): Promise<ServiceClient<T>> => {
    const { record, timeoutMs } = await liveService(name, opts, "getClient");
    if (record.registration !== "instance") {
      throw new LegacyServiceError(
        `service "${name}" in namespace "${ns}" is a legacy raw actor: it was registered from a class or factory (${record.className}), so the registry owns it and it has no owner to be a client of; ` +
          `use get("${name}") for a handle to it, or have its owner register the running object with registerInstance("${name}", object)`,
        { details: { service: name, namespace: ns, kind: record.kind, registration: record.registration ?? "factory" } },
      );
    }
    return makeHandle<T>(name, timeoutMs, record.methods, record.kind) as unknown as ServiceClient<T>;
  };

  const getImpl = async <T>(name: string, opts?: HandleOptions): Promise<ServiceHandle<T>> => {
    const { record, timeoutMs } = await liveService(name, opts, "get");
    return makeHandle<T>(name, timeoutMs, record.methods, record.kind);
  };

  return {
    makeHandle,
    close() {
      routesClosed = true;
      for (const d of routes.values()) d.close();
      routes.clear();
    },
    get: getImpl,
    getClient: getClientImpl,
    at: <T>(name: string, opts?: HandleOptions) => {
      validateName("service", name);
      return makeHandle<T>(name, handleOptions.parse(opts, `at("${name}") options`).timeoutMs ?? p.timeoutMs);
    },
  };
}
