import { createConnection, type Socket } from "node:net";
import { NatsConnectionImpl, setTransportFactory, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import { NodeTransport, nodeResolveHost } from "@nats-io/transport-node/lib/node_transport.js";

/**
 * nats.js's node transport (3.4.0) ignores close() until it has connected. When its connect
 * timeout fires first (a port that accepts TCP but never sends INFO, such as an HTTP server, or
 * an address that drops SYNs), the socket stays open and keeps the process alive after
 * connect() has already rejected. This one destroys whatever socket it holds on close().
 */
class AbortableNodeTransport extends NodeTransport {
  private dialing: Socket | undefined;

  // Upstream's dial() keeps its socket in a local until it connects; the same, but reachable.
  override dial(hp: { hostname: string; port: number }): Promise<Socket> {
    return new Promise((resolve, reject) => {
      let dialError: Error | undefined;
      const socket = createConnection(hp.port, hp.hostname, () => {
        socket.removeAllListeners();
        this.dialing = undefined;
        resolve(socket);
      });
      this.dialing = socket;
      socket.on("error", (err) => (dialError = err));
      socket.on("close", () => {
        socket.removeAllListeners();
        this.dialing = undefined;
        reject(dialError ?? new Error(`connection to ${hp.hostname}:${hp.port} closed while dialing`));
      });
      socket.setNoDelay(true);
    });
  }

  override close(err?: Error): Promise<void> {
    if (!this.connected && !this.done) {
      // Set before destroying: connect() checks it after each step and gives up.
      this.done = true;
      this.dialing?.destroy();
      this.socket?.destroy();
    }
    return super.close(err);
  }
}

/**
 * `connect` of @nats-io/transport-node with the transport above. nats.js keeps its transport
 * factory in module state and reads it on every dial, so it is set on every call, as upstream's
 * connect() does; a later plain connect() elsewhere only brings back the upstream transport.
 */
export function connectNats(opts: ConnectionOptions): Promise<NatsConnection> {
  setTransportFactory({ factory: () => new AbortableNodeTransport(), dnsResolveFn: nodeResolveHost });
  return NatsConnectionImpl.connect(opts);
}
