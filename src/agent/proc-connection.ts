import type { BusConnection, ConnectionOptions } from "../connection/index.ts";
import { authOf, connectionAuth, inboxPrefixOf, resolveServers } from "../connection/index.ts";
import type { ProcConnection } from "./protocol.ts";

/**
 * How processes started by this one reach NATS: the URLs this process was given (or the
 * private dev server it started, or the server it is connected to), the inbox prefix, and the
 * spawner's credentials (creds file included) for the IPC channel only (never env or argv).
 */
export function procConnectionFor(conn: BusConnection, opts: ConnectionOptions): ProcConnection {
  let servers: string[] | undefined;
  if (opts.servers !== undefined || process.env.NATS_URL) servers = resolveServers(opts).servers;
  else if (conn.devServerUrl) servers = [conn.devServerUrl];
  else {
    const current = conn.nc?.getServer();
    servers = current ? [current.includes("://") ? current : `nats://${current}`] : resolveServers(opts).servers;
  }
  const out: ProcConnection = { servers };
  // A tenant's permissions allow only its own reply prefix, and replicas make requests too.
  const inboxPrefix = opts.inboxPrefix ?? (conn.nc ? inboxPrefixOf(conn.nc) : undefined);
  if (inboxPrefix && inboxPrefix !== "_INBOX") out.inboxPrefix = inboxPrefix;
  const auth = authOf(opts) ?? connectionAuth(conn);
  if (auth) out.auth = auth;
  return out;
}
