import { readFileSync } from "node:fs";
import type { ConnectionOptions as NatsOptions, Authenticator } from "@nats-io/transport-node";
import { credsAuthenticator, nkeyAuthenticator } from "@nats-io/transport-node";
import { InvalidOptionsError } from "../errors/index.ts";
import { CHUNK_CHECKS } from "../chunks/options.ts";
import { bool, defineOptions, durationMs, int, nested, oneOf, oneOrMany, str, type Resolved, type SpecFor } from "../options/index.ts";

/**
 * How to reach NATS. Everything a deployment needs passes through (auth and TLS); secrets are
 * read here and never logged, stored in the registry or passed to child processes.
 */
export interface ConnectionOptions {
  /** Server URLs; default `NATS_URL`, then nats://127.0.0.1:4222. */
  servers?: string | string[];
  /** Client name shown by `nats server report connections`. */
  name?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** An NKey user seed ("SU..."). */
  nkeySeed?: string;
  /** A .creds file (JWT + seed), as `nats` CLI uses. */
  credsFile?: string;
  tls?: { caFile?: string; certFile?: string; keyFile?: string; handshakeFirst?: boolean };
  /**
   * Prefix of reply subjects (default "_INBOX"). Give each tenant its own (e.g. "_INBOX_team_a")
   * and allow only that in its NATS permissions, so no tenant can subscribe to others' replies.
   */
  inboxPrefix?: string;
  /**
   * When no `servers`/NATS_URL is given and nothing answers on 127.0.0.1:4222: "auto" (default)
   * starts a private `nats-server -js` child (stopped on close) if one is on PATH, "never" fails
   * with instructions, "always" starts one regardless.
   */
  devServer?: "auto" | "never" | "always";
  /** -1 (default): keep reconnecting forever; calls still fail at their deadlines. */
  maxReconnectAttempts?: number;
  reconnectTimeWaitMs?: number;
  connectTimeoutMs?: number;
  /**
   * Arguments and results whose encoding is larger travel in chunks the receiver pulls
   * (src/chunks); default half the server's max_payload.
   */
  chunkThresholdBytes?: number;
  /** The largest argument or result this connection sends or accepts, in bytes (default 1 GiB). */
  maxValueBytes?: number;
  /**
   * Calls made to one subject in one turn leave as one message (default true). Hosts answer
   * such calls combined on the caller's inbox prefix: a NATS user that may only answer requests
   * (`allow_responses`) and not publish to the callers' inboxes needs its callers to set false.
   */
  coalesce?: boolean;
}

export const DEFAULT_URL = "nats://127.0.0.1:4222";

const TLS_OPTIONS = defineOptions(
  "tls",
  {
    caFile: str({ nonEmpty: true, expected: "a path to a PEM file" }),
    certFile: str({ nonEmpty: true, expected: "a path to a PEM file" }),
    keyFile: str({ nonEmpty: true, expected: "a path to a PEM file" }),
    handshakeFirst: bool(),
  },
  {},
  { example: '{ caFile: "/etc/nats/ca.pem" }' },
);

/** The checks of every connection option; entries that also take these (getServices, startAgent) spread them into their own. */
export const CONNECTION_CHECKS = {
  servers: oneOrMany(str({ expected: "a URL such as nats://127.0.0.1:4222 (or a list of them)" })),
  name: str({ nonEmpty: true }),
  // Secrets: a wrong value is reported by its type only.
  user: str({ secret: true }),
  pass: str({ secret: true }),
  token: str({ secret: true }),
  nkeySeed: str({ nonEmpty: true, secret: true, expected: 'an NKey user seed ("SU...")' }),
  credsFile: str({ nonEmpty: true, expected: "a path to a .creds file" }),
  tls: nested(TLS_OPTIONS),
  inboxPrefix: str({ nonEmpty: true, expected: 'a subject prefix such as "_INBOX_team_a"' }),
  devServer: oneOf(["auto", "never", "always"]),
  maxReconnectAttempts: int({ min: -1, hint: "-1 keeps reconnecting forever" }),
  reconnectTimeWaitMs: durationMs({ min: 0 }),
  connectTimeoutMs: durationMs({ min: 1 }),
  coalesce: bool(),
  ...CHUNK_CHECKS,
} satisfies SpecFor<ConnectionOptions>;

export const CONNECTION_DEFAULTS = Object.freeze({
  devServer: "auto",
  maxReconnectAttempts: -1,
  reconnectTimeWaitMs: 250,
  connectTimeoutMs: 5_000,
} as const);

export const connectionOptions = defineOptions("connectBus options", CONNECTION_CHECKS, () => ({ ...CONNECTION_DEFAULTS }), {
  example: '{ servers: "nats://127.0.0.1:4222" }',
});
export type ResolvedConnectionOptions = Resolved<typeof CONNECTION_CHECKS, typeof CONNECTION_DEFAULTS>;

/**
 * The secret part of the options. A process hands it to the children it spawns itself over their
 * private IPC channel (not argv or env, which `ps` and /proc show), and never over NATS.
 */
export type ConnectionAuth = Pick<ConnectionOptions, "user" | "pass" | "token" | "nkeySeed" | "credsFile" | "tls">;

export function authOf(opts: ConnectionOptions): ConnectionAuth | undefined {
  const out: ConnectionAuth = {};
  for (const k of ["user", "pass", "token", "nkeySeed", "credsFile", "tls"] as const) {
    if (opts[k] !== undefined) (out as Record<string, unknown>)[k] = opts[k];
  }
  return Object.keys(out).length ? out : undefined;
}

/** A server URL fit for messages: `nats://user:secret@host` keeps the user, loses the secret. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/]*)@/i, (_m, scheme: string, auth: string) => {
    const user = auth.includes(":") ? auth.slice(0, auth.indexOf(":")) : "";
    return `${scheme}${user ? `${user}:` : ""}***@`;
  });
}

export function resolveServers(opts: ConnectionOptions, env: NodeJS.ProcessEnv = process.env): { servers: string[]; explicit: boolean } {
  if (opts.servers !== undefined) {
    const list = Array.isArray(opts.servers) ? opts.servers : opts.servers.split(",");
    const servers = list.map((s) => s.trim()).filter(Boolean);
    if (servers.length === 0) throw new InvalidOptionsError("servers is empty: pass a URL such as nats://127.0.0.1:4222, or omit it to use NATS_URL");
    return { servers, explicit: true };
  }
  if (env.NATS_URL) return { servers: env.NATS_URL.split(",").map((s) => s.trim()).filter(Boolean), explicit: true };
  return { servers: [DEFAULT_URL], explicit: false };
}

export function toNatsOptions(opts: ResolvedConnectionOptions, servers: string[]): NatsOptions {
  const authenticators: Authenticator[] = [];
  if (opts.nkeySeed) authenticators.push(nkeyAuthenticator(new TextEncoder().encode(opts.nkeySeed)));
  if (opts.credsFile) {
    let creds: Uint8Array;
    try {
      creds = readFileSync(opts.credsFile);
    } catch (err) {
      throw new InvalidOptionsError(`cannot read credsFile ${opts.credsFile}: ${(err as Error).message}`, { cause: err });
    }
    authenticators.push(credsAuthenticator(creds));
  }
  if (authenticators.length > 1) throw new InvalidOptionsError("give either nkeySeed or credsFile, not both");
  const out: NatsOptions = {
    servers,
    name: opts.name ?? `actorbus-${process.pid}`,
    // Async stack traces cost a third of the request rate; our errors carry their own context.
    noAsyncTraces: true,
    maxReconnectAttempts: opts.maxReconnectAttempts,
    reconnectTimeWait: opts.reconnectTimeWaitMs,
    timeout: opts.connectTimeoutMs,
    ignoreClusterUpdates: false,
  };
  if (opts.user !== undefined) out.user = opts.user;
  if (opts.pass !== undefined) out.pass = opts.pass;
  if (opts.token !== undefined) out.token = opts.token;
  if (authenticators[0]) out.authenticator = authenticators[0];
  if (opts.tls) out.tls = { ...opts.tls };
  if (opts.inboxPrefix !== undefined) out.inboxPrefix = opts.inboxPrefix;
  return out;
}
