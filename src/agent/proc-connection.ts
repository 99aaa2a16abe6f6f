import type { BusConnection, ConnectionOptions } from "../connection/index.ts";
import { resolveServers } from "../connection/index.ts";
import type { ProcConnection } from "./protocol.ts";

/**
 * How processes started by this one reach NATS: the URLs this process was given (or the
 * private dev server it started, or the server it is connected to) and a creds file path.
 * Passwords, tokens and seeds are never handed down.
 */
export function procConnectionFor(conn: BusConnection, opts: ConnectionOptions): ProcConnection {
  let servers: string[] | undefined;
  if (opts.servers !== undefined || process.env.NATS_URL) servers = resolveServers(opts).servers;
  else if (conn.devServerUrl) servers = [conn.devServerUrl];
  else {
    const current = conn.nc?.getServer();
    servers = current ? [current.includes("://") ? current : `nats://${current}`] : resolveServers(opts).servers;
  }
  return opts.credsFile ? { servers, credsFile: opts.credsFile } : { servers };
}
