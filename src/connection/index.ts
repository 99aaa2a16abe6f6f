export { connectBus, wrapNatsConnection, type BusConnection } from "./connection.ts";
export type { ConnectionOptions } from "./options.ts";
export { resolveServers, DEFAULT_URL } from "./options.ts";
export type { Transport, Inbound, Subscription } from "./transport.ts";
export { startNatsServer, freePort, findNatsServerBinary, type NatsServerProcess, type NatsServerSpawnOptions } from "./dev-server.ts";
export { createDeadlines, type Deadlines } from "./deadlines.ts";
export { createLocalBus, localConnection, type LocalBus } from "./local.ts";
