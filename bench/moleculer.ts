/**
 * Moleculer 0.15 over its NATS transporter: the peer the call benchmarks compare against. A
 * devDependency of the bench only (with the `nats` 2.x client it needs); the library never loads it.
 */
import { randomBytes } from "node:crypto";

export async function moleculerBroker(url: string, role: string) {
  const { ServiceBroker } = (await import("moleculer")).default as typeof import("moleculer");
  return new ServiceBroker({
    nodeID: `${role}-${process.pid}-${randomBytes(3).toString("hex")}`,
    transporter: { type: "NATS", options: { url } },
    logger: false,
    // The benchmark measures calls, not Moleculer's failure detection.
    heartbeatInterval: 10,
    requestTimeout: 30_000,
  });
}

/** A started client broker and its echo call, once the echo service is seen. */
export async function moleculerClient(url: string) {
  const broker = await moleculerBroker(url, "client");
  await broker.start();
  await broker.waitForServices("echo", 20_000);
  return { call: (payload: object) => broker.call("echo.echo", payload), stop: () => broker.stop() };
}
