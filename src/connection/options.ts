import { readFileSync } from "node:fs";
import type { ConnectionOptions as NatsOptions, Authenticator } from "@nats-io/transport-node";
import { credsAuthenticator, nkeyAuthenticator } from "@nats-io/transport-node";
import { InvalidOptionsError } from "../errors/index.ts";

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
}

export const DEFAULT_URL = "nats://127.0.0.1:4222";

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

export function toNatsOptions(opts: ConnectionOptions, servers: string[]): NatsOptions {
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
    maxReconnectAttempts: opts.maxReconnectAttempts ?? -1,
    reconnectTimeWait: opts.reconnectTimeWaitMs ?? 250,
    timeout: opts.connectTimeoutMs ?? 5_000,
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
