import { startNatsServer, type NatsServerProcess } from "../../src/connection/index.ts";

/**
 * One plain JetStream server for every suite that needs just "a server" (its own port and temp
 * storage, stopped at the end). NATS_TEST_URL (e.g. the docker-compose container) replaces it.
 * Suites that kill, restart or configure servers start their own with startNatsServer().
 */
let server: NatsServerProcess | undefined;

export async function mochaGlobalSetup(): Promise<void> {
  if (process.env.NATS_TEST_URL) return;
  server = await startNatsServer();
  process.env.ACTORBUS_SHARED_TEST_URL = server.url;
}

export async function mochaGlobalTeardown(): Promise<void> {
  await server?.stop();
}
