export { connectBus, connectionAuth, wrapNatsConnection, type BusConnection } from "./connection.ts";
export type { ConnectionOptions, ConnectionAuth } from "./options.ts";
export { authOf, redactUrl, resolveServers, DEFAULT_URL } from "./options.ts";
export type { Transport, Inbound, Subscription } from "./transport.ts";
export { startNatsServer, freePort, findNatsServerBinary, type NatsServerProcess, type NatsServerSpawnOptions } from "./dev-server.ts";
export { bounded } from "./bounded.ts";
export { createDeadlines, type Deadlines } from "./deadlines.ts";
export { createLocalBus, localConnection, type LocalBus } from "./local.ts";
export { rateLimitedLogger, stderrLogger, checkLogger, brief, type Logger, type RateLimitedLogger, type RateLimitOptions } from "./log.ts";
