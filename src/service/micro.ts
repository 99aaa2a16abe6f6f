import type { BusConnection, Subscription } from "../connection/index.ts";
import { microSubjects } from "../subjects/index.ts";

/**
 * The NATS micro-service discovery protocol (ADR-32): answers $SRV.PING / INFO / STATS (plain,
 * by name, by name and id) with the JSON documents `nats micro ls|info|stats` expect.
 * Times in STATS are integer nanoseconds, `started` is RFC 3339.
 */
export interface MicroEndpointStats {
  name: string;
  subject: string;
  requests: number;
  errors: number;
  lastError: string;
  processingTimeNs: number;
  data?: Record<string, unknown>;
}

export interface MicroParams {
  conn: BusConnection;
  name: string;
  id: string;
  version: string;
  description: string;
  metadata: Record<string, string>;
  /** Figures that change while the service runs (its replicas' versions), added to STATS replies' metadata. */
  liveMetadata?(): Record<string, string>;
  startedAt: string;
  endpoints(): MicroEndpointStats[];
}

export interface MicroResponder {
  stop(): void;
}

const enc = new TextEncoder();

/** Endpoint names allow fewer characters than JS method names. */
export const microEndpointName = (method: string) => method.replace(/[^A-Za-z0-9_-]/g, "_") || "_";

export function microPing(p: MicroParams) {
  return { type: "io.nats.micro.v1.ping_response", name: p.name, id: p.id, version: p.version, metadata: p.metadata };
}

export function microInfo(p: MicroParams) {
  return {
    type: "io.nats.micro.v1.info_response",
    name: p.name,
    id: p.id,
    version: p.version,
    metadata: p.metadata,
    description: p.description,
    endpoints: p.endpoints().map((e) => ({ name: microEndpointName(e.name), subject: e.subject, metadata: { method: e.name } })),
  };
}

export function microStats(p: MicroParams) {
  return {
    type: "io.nats.micro.v1.stats_response",
    name: p.name,
    id: p.id,
    version: p.version,
    metadata: p.liveMetadata ? { ...p.metadata, ...p.liveMetadata() } : p.metadata,
    started: p.startedAt,
    endpoints: p.endpoints().map((e) => {
      const total = Math.round(e.processingTimeNs);
      return {
        name: microEndpointName(e.name),
        subject: e.subject,
        num_requests: e.requests,
        num_errors: e.errors,
        last_error: e.lastError,
        processing_time: total,
        average_processing_time: e.requests > 0 ? Math.round(total / e.requests) : 0,
        ...(e.data ? { data: e.data } : {}),
      };
    }),
  };
}

export function serveMicro(p: MicroParams): MicroResponder {
  const { transport } = p.conn;
  const subs: Subscription[] = [];
  const verbs = { PING: microPing, INFO: microInfo, STATS: microStats } as const;
  for (const verb of Object.keys(verbs) as (keyof typeof verbs)[]) {
    for (const subject of microSubjects(verb, p.name, p.id)) {
      subs.push(
        transport.subscribe(subject, (msg) => {
          if (msg.reply) msg.respond(enc.encode(JSON.stringify(verbs[verb](p))));
        }),
      );
    }
  }
  return {
    stop() {
      for (const s of subs.splice(0)) s.unsubscribe();
    },
  };
}
