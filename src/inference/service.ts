import type { ActorOptions, ServiceHandle } from "../actor/index.ts";
import { InvalidOptionsError } from "../errors/index.ts";
import type { Services } from "../registry/index.ts";
import { defineOptions, durationMs, type SpecFor } from "../options/index.ts";
import { NatsTransport } from "./nats.ts";
import { submitOptions } from "./options.ts";
import type { InferenceServer } from "./server.ts";
import type { InferenceServerStats } from "./stats.ts";
import type { InferenceClient, SubmitOptions } from "./transport.ts";

/** Where an inference server listens, as stored in its registry record and returned by describe(). */
export interface InferenceEndpointInfo {
  kind: "inference";
  maxBatchSize: number;
  minBatchSize: number;
  timeoutMs: number;
  /** Present when the server listens on NATS: clients can then call it directly. */
  namespace?: string;
  name?: string;
  subject?: string;
}

/**
 * The registry face of an InferenceServer: `services.register("policy", InferenceEndpoint, server)`
 * in the server's process makes it findable like any service. Calls through the handle take one
 * extra hop (handle -> actor -> batching loop); `inferenceClient()` uses the handle only to find
 * the server and then talks to its subject directly. Stopping the service (remove, reset, close)
 * shuts the server down.
 */
export class InferenceEndpoint<I = unknown, O = unknown> {
  readonly #server: InferenceServer<I, O, any, any>;
  readonly #client: InferenceClient<I, O>;

  constructor(server: InferenceServer<I, O, any, any>) {
    if (server === null || typeof server !== "object" || typeof (server as InferenceServer<I, O>).client !== "function") {
      throw new InvalidOptionsError("InferenceEndpoint needs the InferenceServer to expose: services.register(name, InferenceEndpoint, server)");
    }
    this.#server = server;
    this.#client = server.client();
  }

  call(input: I): Promise<O> {
    return this.#client.call(input);
  }

  stats(): InferenceServerStats {
    return this.#server.stats();
  }

  describe(): InferenceEndpointInfo {
    return endpointInfo(this.#server);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#server.shutdown();
  }
}

function endpointInfo(server: InferenceServer<any, any, any, any>): InferenceEndpointInfo {
  const info: InferenceEndpointInfo = { kind: "inference", maxBatchSize: server.maxBatchSize, minBatchSize: server.minBatchSize, timeoutMs: server.timeoutMs };
  const t = server.transport;
  if (t instanceof NatsTransport) Object.assign(info, { namespace: t.namespace, name: t.name, subject: t.subject });
  return info;
}

/**
 * Registers `server` under `name` with what a batching endpoint needs: enough actor concurrency
 * that calls through handles reach the loop together (a mailbox of 1 would serialise them and
 * defeat batching), and record metadata that lets `inferenceClient` skip the actor hop.
 */
export function registerInference<I, O>(
  services: Services,
  name: string,
  server: InferenceServer<I, O, any, any>,
  options: ActorOptions = {},
): Promise<ServiceHandle<InferenceEndpoint<I, O>>> {
  const info = endpointInfo(server);
  const metadata: Record<string, string> = { ...(options.metadata ?? {}), kind: "inference" };
  if (info.subject) Object.assign(metadata, { inferenceNamespace: info.namespace!, inferenceName: info.name!, subject: info.subject });
  return services.registerWithOptions(
    name,
    InferenceEndpoint<I, O>,
    { maxConcurrency: Math.max(64, server.maxBatchSize * 4), maxPending: 4096, ...options, metadata },
    server,
  ) as Promise<ServiceHandle<InferenceEndpoint<I, O>>>;
}

export interface RegistryInferenceClient<I, O> extends InferenceClient<I, O>, AsyncDisposable {
  /** "direct" (NATS subject of the server) or "handle" (through the registered actor). */
  readonly route: "direct" | "handle";
  close(): Promise<void>;
}

export interface InferenceClientOptions {
  timeoutMs?: number;
  leaseMs?: number;
}

const inferenceClientOptions = defineOptions(
  "inferenceClient options",
  {
    timeoutMs: durationMs({ min: 1, hint: "the default deadline of a call" }),
    leaseMs: durationMs({ min: 20, hint: "raise it above the server's longest synchronous model call" }),
  } satisfies SpecFor<InferenceClientOptions>,
  {},
  { example: "{ timeoutMs: 5_000 }" },
);

/**
 * A client for an inference server found by name in the registry: direct to its NATS subject
 * when it has one (batching, leases), else through the registered handle.
 */
export async function inferenceClient<I = unknown, O = unknown>(services: Services, name: string, given: InferenceClientOptions = {}): Promise<RegistryInferenceClient<I, O>> {
  const opts = inferenceClientOptions.parse(given);
  const handle = await services.get<InferenceEndpoint<I, O>>(name, opts.timeoutMs === undefined ? undefined : { timeoutMs: opts.timeoutMs });
  const record = await services.describe(name);
  let info: Partial<InferenceEndpointInfo> | undefined;
  if (record?.metadata.kind === "inference") {
    const m = record.metadata;
    info = m.subject ? { namespace: m.inferenceNamespace, name: m.inferenceName, subject: m.subject } : {};
  } else if (record && record.methods.includes("call") && record.methods.includes("describe")) {
    info = await handle.describe();
  }
  if (!info || (info.kind !== undefined && info.kind !== "inference")) {
    throw new InvalidOptionsError(`service "${name}" is not an inference server (class ${record?.className ?? "unknown"}); register one with registerInference(services, name, server)`, {
      details: { service: name },
    });
  }
  if (info.namespace && info.name) {
    const transport = new NatsTransport<I, O>({ connection: services.connection, namespace: info.namespace, name: info.name, ...opts });
    const client = transport.client();
    return {
      route: "direct",
      call: client.call,
      submit: client.submit,
      close: () => transport.close(),
      [Symbol.asyncDispose]: () => transport.close(),
    };
  }
  // Through the actor the handle's deadline applies; a per-call one is still checked, so a typo fails here as on the direct route.
  const call = (input: I, o?: SubmitOptions) => {
    try {
      submitOptions.parse(o);
    } catch (err) {
      return Promise.reject(err);
    }
    return handle.call(input) as Promise<O>;
  };
  return { route: "handle", call, submit: call, close: async () => {}, [Symbol.asyncDispose]: async () => {} };
}
