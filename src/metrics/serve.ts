import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { ActorBusError, InvalidOptionsError } from "../errors/index.ts";
import { defineOptions, int, obj, str, type SpecFor } from "../options/index.ts";
import type { Metrics } from "./metrics.ts";

export interface ServeMetricsOptions {
  metrics: Metrics;
  /** 0 (default) picks a free port; `server.port` tells which. */
  port?: number;
  /** Default 127.0.0.1: metrics name services and hosts, so they are not published to the network unasked. */
  host?: string;
  /** Default "/metrics". */
  path?: string;
}

export interface MetricsServer extends AsyncDisposable {
  readonly port: number;
  readonly url: string;
  /** Stops listening and ends open connections. Idempotent. */
  close(): Promise<void>;
}

const serveOptions = defineOptions(
  "serveMetrics options",
  {
    metrics: obj<Metrics>("pass the result of await createMetrics()", ["expose"]),
    port: int({ min: 0, max: 65_535, hint: "0 picks a free port" }),
    host: str({ nonEmpty: true, expected: 'an address to bind, such as "127.0.0.1" or "0.0.0.0"' }),
    path: str({ nonEmpty: true, expected: 'a path such as "/metrics"' }),
  } satisfies SpecFor<ServeMetricsOptions>,
  { port: 0, host: "127.0.0.1", path: "/metrics" },
  { example: "{ metrics, port: 9464 }" },
);

/** Serves the Prometheus text exposition of `metrics` over HTTP; resolves once it listens. */
export async function serveMetrics(options: ServeMetricsOptions): Promise<MetricsServer> {
  const o = serveOptions.parse(options);
  if (!o.metrics) throw new InvalidOptionsError("serveMetrics needs { metrics }: pass the result of await createMetrics()");
  const { metrics, path } = o;
  const server: Server = createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (url !== path) {
      res.writeHead(404, { "content-type": "text/plain" }).end(`not found; metrics are at ${path}\n`);
      return;
    }
    metrics.expose().then(
      (text) => res.writeHead(200, { "content-type": metrics.contentType }).end(req.method === "HEAD" ? undefined : text),
      (err: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`collecting metrics failed: ${(err as Error)?.message ?? String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => {
      server.off("error", reject);
      resolve();
    });
  }).catch((err: NodeJS.ErrnoException) => {
    throw new ActorBusError(`cannot serve metrics on ${o.host}:${o.port}: ${err.message}`, { cause: err, details: { host: o.host, port: o.port } });
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      // A scraper's keep-alive connection would hold close() open until it times out.
      server.closeAllConnections();
    }));
  const host = o.host.includes(":") ? `[${o.host}]` : o.host;
  return { port, url: `http://${host}:${port}${path}`, close, [Symbol.asyncDispose]: close };
}
