import { createInbox, PermissionViolationError, type NatsConnection } from "@nats-io/transport-node";
import { configureChunks } from "../chunks/index.ts";
import { createCodec, type Codec } from "../codec/index.ts";
import { ConnectionLostError, NoServerError, PermissionError } from "../errors/index.ts";
import { findNatsServerBinary, startNatsServer, tcpReachable, type NatsServerProcess } from "./dev-server.ts";
import { authOf, connectionOptions, redactUrl, resolveServers, toNatsOptions, type ConnectionAuth, type ConnectionOptions } from "./options.ts";
import { bounded } from "./bounded.ts";
import { createMovableConnection } from "./lame-duck.ts";
import { rateLimitedLogger, stderrLogger } from "./log.ts";
import { connectNats } from "./nats-connect.ts";
import { createRequestMux, inboxPrefixOf } from "./request-mux.ts";
import type { Transport } from "./transport.ts";

/**
 * One NATS connection and what hangs off it: the request mux, the codec and the close hooks of
 * everything served over it. Share one per process; registries, inference transports and agents
 * all accept it.
 */
export interface BusConnection extends AsyncDisposable {
  readonly backend: "nats" | "local";
  /** The underlying nats.js connection (NATS backend only). */
  readonly nc: NatsConnection | undefined;
  readonly transport: Transport;
  readonly codec: Codec;
  /** e.g. "2.10.22"; "local" for the in-memory backend. */
  readonly serverVersion: string;
  /** True when the server is part of a cluster (drives registry replication). */
  readonly clustered: boolean;
  /** The URL of a private nats-server this connection started (embedded default), if any. */
  readonly devServerUrl: string | undefined;
  /** Runs before the connection drains: hosts stop taking calls and finish in-flight ones. */
  onClose(hook: () => Promise<void>): () => void;
  /** Stops hosts (via hooks), fails outstanding calls, drains, stops a dev server. Idempotent. */
  close(): Promise<void>;
}

const DRAIN_BOUND_MS = 5_000;

// Kept beside the connection rather than on it, so no property walk or log of a BusConnection shows it.
const auths = new WeakMap<BusConnection, ConnectionAuth>();

/** The credentials a connection was opened with, for the processes this process spawns. */
export function connectionAuth(conn: BusConnection): ConnectionAuth | undefined {
  return auths.get(conn);
}

export async function connectBus(options: ConnectionOptions = {}): Promise<BusConnection> {
  const opts = connectionOptions.parse(options);
  const { servers, explicit } = resolveServers(opts);
  let devServer: NatsServerProcess | undefined;
  let urls = servers;
  const mode = opts.devServer ?? "auto";
  if (!explicit && mode !== "never") {
    const reachable = mode === "always" ? false : await tcpReachable("127.0.0.1", 4222);
    if (!reachable && findNatsServerBinary()) {
      devServer = await startNatsServer();
      urls = [devServer.url];
    }
  }
  const natsOptions = toNatsOptions(opts, urls);
  let nc: NatsConnection;
  try {
    nc = await connectNats(natsOptions);
  } catch (err) {
    await devServer?.stop();
    const source = !explicit ? undefined : opts.servers !== undefined ? "servers" : "NATS_URL";
    throw explainConnectError(err, urls, { source, devServer: mode, timeoutMs: natsOptions.timeout });
  }
  const bus = wrapNatsConnection(nc, devServer, { coalesce: opts.coalesce ?? true });
  configureChunks(bus, opts);
  const auth = authOf(opts);
  if (auth) auths.set(bus, auth);
  return bus;
}

interface ConnectAttempt {
  /** Where the URLs came from; undefined for the built-in default. */
  source: "servers" | "NATS_URL" | undefined;
  devServer: "auto" | "never" | "always";
  timeoutMs: number | undefined;
}

function explainConnectError(err: unknown, rawUrls: string[], attempt: ConnectAttempt): Error {
  const m = (err as Error)?.message ?? String(err);
  const urls = rawUrls.map(redactUrl);
  const where = urls.join(",");
  if (/authoriz|authentic|permission/i.test(m)) {
    return new PermissionError(`NATS refused the credentials for ${where}: ${m}`, { cause: err });
  }
  // nats.js says just "timeout": something accepted TCP but never spoke NATS, or nothing answered.
  const why =
    (err as Error)?.name === "TimeoutError" || m === "timeout"
      ? `no NATS greeting within ${attempt.timeoutMs ?? "the connect timeout"} ms (is that a NATS port, not an HTTP one? NATS listens on 4222 by default)`
      : m;
  const details = { urls, source: attempt.source ?? "default" };
  if (attempt.source === undefined) {
    const how = "start one: `apt-get install nats-server && nats-server -js`, or `docker compose up -d` in the actorbus checkout, or set NATS_URL";
    return new NoServerError(`cannot reach a NATS server at ${where} (${why}); ${how}`, { cause: err, details });
  }
  const drop = attempt.source === "servers" ? "omit `servers` (and leave NATS_URL unset)" : "unset NATS_URL";
  const fallback =
    attempt.devServer === "never"
      ? `or ${drop} to use a server on 127.0.0.1:4222`
      : `or ${drop} and actorbus starts a private nats-server for this process (devServer: "auto")`;
  return new NoServerError(
    `cannot reach a NATS server at ${where}, given by ${attempt.source} (${why}); check the URL and that nats-server is running there, ${fallback}`,
    { cause: err, details },
  );
}

/** Wraps an existing nats.js connection (the caller keeps ownership of `nc` unless closing us). */
export function wrapNatsConnection(nc: NatsConnection, devServer?: NatsServerProcess, o: { coalesce?: boolean } = {}): BusConnection {
  const mux = createRequestMux(nc, { coalesce: o.coalesce ?? true });
  // Values over the server's limit are refused before the work of encoding them.
  const codec = createCodec({ maxPayload: () => nc.info?.max_payload ?? 1024 * 1024 });
  const hooks = new Set<() => Promise<void>>();
  let closing: Promise<void> | undefined;

  // In-flight calls cannot get their replies across a reconnect (the server dropped our
  // subscription interest in between), so fail them now rather than at their deadlines.
  let connected = true;
  // Subscriptions and requests that follow the connection off a server in lame-duck mode.
  const log = rateLimitedLogger(stderrLogger());
  const movable = createMovableConnection({
    nc,
    send: mux.request,
    inFlight: () => mux.inFlight,
    newInbox: () => createInbox(inboxPrefixOf(nc)),
    warn: (msg, fields) => log.warn(msg, fields),
  });
  (async () => {
    for await (const s of nc.status()) {
      movable.status(s as { type: string; server?: string });
      if (s.type === "reconnect") connected = true;
      if (s.type === "disconnect") {
        connected = false;
        mux.failAll((subject) => new ConnectionLostError(`connection to NATS lost while calling ${subject}; the call may or may not have run`));
      } else if (s.type === "error" && s.error instanceof PermissionViolationError && s.error.operation === "publish") {
        // The server drops a forbidden publish and says so once; without this the call would
        // wait for its deadline and end as a misleading timeout.
        const subject = s.error.subject;
        mux.failSubject(subject, new PermissionError(`this connection's NATS user may not publish to ${subject}`, { details: { subject } }));
      }
    }
  })().catch(() => {});

  const transport: Transport = {
    get maxPayload() {
      return nc.info?.max_payload ?? 1024 * 1024;
    },
    request: movable.request,
    publish: movable.publish,
    subscribe: movable.subscribe,
    flush: () => nc.flush(),
    newInbox: () => createInbox(inboxPrefixOf(nc)),
  };

  const info = nc.info;
  return {
    backend: "nats",
    nc,
    transport,
    codec,
    serverVersion: info?.version ?? "unknown",
    clustered: Boolean(info?.cluster) || (info?.connect_urls?.length ?? 0) > 1,
    devServerUrl: devServer?.url,
    onClose(hook) {
      hooks.add(hook);
      return () => hooks.delete(hook);
    },
    close() {
      closing ??= (async () => {
        // Hosts first: they stop taking calls and finish what they have while the
        // connection can still carry their replies; nats.js drain() would not wait for them.
        await Promise.allSettled([...hooks].map((h) => h()));
        hooks.clear();
        movable.close();
        mux.close();
        // A drain needs the server: cut off from it, nats.js would wait for a reconnect forever.
        if (!nc.isClosed() && connected) await bounded(nc.drain(), DRAIN_BOUND_MS);
        if (!nc.isClosed()) await nc.close().catch(() => {});
        await devServer?.stop();
      })();
      return closing;
    },
    [Symbol.asyncDispose]() {
      return this.close();
    },
  };
}
