import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { freePort, startNatsServer, type NatsServerProcess } from "../../src/connection/index.ts";

/**
 * A JetStream cluster of nats-server processes on loopback: free client and route ports, temp
 * storage, torn down by stop(). Used by the cluster tests and by `npm run bench -- faults`.
 */
export interface NatsCluster {
  readonly urls: string[];
  readonly nodes: NatsServerProcess[];
  /** Resolves once JetStream has a meta leader and accepts API calls on every live node. */
  ready(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** `extraConfig`: lines added to every node's config (e.g. lame_duck_grace_period for lame-duck drills). */
export async function startNatsCluster(size = 3, name = "actorbus_test", extraConfig = ""): Promise<NatsCluster> {
  const routePorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const clientPorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const routes = routePorts.map((p) => `nats-route://127.0.0.1:${p}`).join(", ");
  const nodes: NatsServerProcess[] = [];
  try {
    for (let i = 0; i < size; i++) {
      nodes.push(
        await startNatsServer({
          port: clientPorts[i],
          config: `server_name: n${i}\n${extraConfig}${extraConfig && !extraConfig.endsWith("\n") ? "\n" : ""}cluster {\n  name: ${name}\n  listen: 127.0.0.1:${routePorts[i]}\n  routes: [${routes}]\n}\n`,
        }),
      );
    }
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw err;
  }
  const cluster: NatsCluster = {
    urls: nodes.map((n) => n.url),
    nodes,
    async ready(timeoutMs = 30_000) {
      const end = Date.now() + timeoutMs;
      for (const node of nodes) {
        for (;;) {
          try {
            const nc = await connect({ servers: node.url, timeout: 1_000 });
            try {
              await (await jetstreamManager(nc, { timeout: 1_000 })).getAccountInfo();
              break;
            } finally {
              await nc.close();
            }
          } catch (err) {
            if (Date.now() > end) throw new Error(`cluster not ready after ${timeoutMs} ms: ${(err as Error).message}`);
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      }
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
  await cluster.ready();
  return cluster;
}
