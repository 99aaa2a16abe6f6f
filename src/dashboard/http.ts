import type { IncomingMessage, ServerResponse } from "node:http";
import { ActorBusError, InvalidOptionsError, ServiceNotFoundError } from "../errors/index.ts";
import type { Metrics } from "../metrics/index.ts";
import type { Assets } from "./assets.ts";

/** What the routes act on; dashboard.ts wires it to the collectors and the registries. */
export interface Routes {
  assets: Assets;
  metrics: Metrics | undefined;
  allowActions: boolean;
  /** The addresses a browser may name in its Host header (DNS rebinding guard), or undefined for any. */
  allowedHosts: Set<string> | undefined;
  snapshot(): unknown;
  openEvents(res: ServerResponse): void;
  restart(namespace: string, service: string, replica: number): Promise<string>;
  reset(namespace: string): Promise<string>;
}

/** Header a page sends with every action: a cross-site form cannot set it, and a script would need a CORS preflight this server never grants. */
export const ACTION_HEADER = "x-actorbus-action";
const MAX_BODY = 4_096;

const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { ...SECURITY_HEADERS, "content-type": "application/json; charset=utf-8" }).end(JSON.stringify(body));
};

export function handleRequest(r: Routes, req: IncomingMessage, res: ServerResponse): void {
  const host = (req.headers.host ?? "").toLowerCase();
  if (r.allowedHosts && !r.allowedHosts.has(host)) {
    // A page of another site whose name resolves to 127.0.0.1 (DNS rebinding) names that site here.
    json(res, 403, { error: `unexpected Host header "${host}": open the dashboard by its own address` });
    return;
  }
  const path = (req.url ?? "/").split("?")[0]!;
  if (req.method === "POST" && path.startsWith("/api/actions/")) {
    void action(r, req, res, path.slice("/api/actions/".length));
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { ...SECURITY_HEADERS, allow: "GET, HEAD" }).end();
    return;
  }
  const asset = r.assets.get(path);
  if (asset) {
    res.writeHead(200, { ...SECURITY_HEADERS, "content-type": asset.type }).end(req.method === "HEAD" ? undefined : asset.body);
    return;
  }
  switch (path) {
    case "/api/snapshot":
      json(res, 200, r.snapshot());
      return;
    case "/api/events":
      r.openEvents(res);
      return;
    case "/metrics": {
      const m = r.metrics;
      if (!m) {
        res.writeHead(404, { "content-type": "text/plain" }).end("this dashboard was started without metrics (startDashboard({ metrics }))\n");
        return;
      }
      m.expose().then(
        (text) => res.writeHead(200, { "content-type": m.contentType }).end(req.method === "HEAD" ? undefined : text),
        (err: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`collecting metrics failed: ${(err as Error)?.message ?? String(err)}\n`),
      );
      return;
    }
    default:
      res.writeHead(404, { ...SECURITY_HEADERS, "content-type": "text/plain" }).end("not found; the dashboard is at /\n");
  }
}

async function action(r: Routes, req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
  if (!r.allowActions) {
    req.resume();
    json(res, 403, { error: "actions are off: start the dashboard with --allow-actions (allowActions: true) to restart replicas or reset namespaces" });
    return;
  }
  const origin = req.headers.origin;
  if (req.headers[ACTION_HEADER] !== "1" || (origin !== undefined && new URL(origin).host.toLowerCase() !== (req.headers.host ?? "").toLowerCase())) {
    req.resume();
    json(res, 403, { error: `actions come from the dashboard's own page (header ${ACTION_HEADER}: 1, same origin)` });
    return;
  }
  try {
    const body = await readJson(req);
    const str = (k: string) => {
      const v = body[k];
      if (typeof v !== "string" || v.length === 0) throw new InvalidOptionsError(`${name}: "${k}" must be a non-empty string`);
      return v;
    };
    let message: string;
    if (name === "restart") {
      const replica = body.replica;
      if (typeof replica !== "number" || !Number.isInteger(replica) || replica < 0) throw new InvalidOptionsError('restart: "replica" must be a replica index (0, 1, ...)');
      message = await r.restart(str("namespace"), str("service"), replica);
    } else if (name === "reset") {
      message = await r.reset(str("namespace"));
    } else {
      json(res, 404, { error: `no action "${name}"; actions are restart and reset` });
      return;
    }
    json(res, 200, { ok: true, message });
  } catch (err) {
    const status = err instanceof ServiceNotFoundError ? 404 : err instanceof InvalidOptionsError ? 400 : 502;
    json(res, status, { error: (err as Error)?.message ?? String(err), code: err instanceof ActorBusError ? err.code : undefined });
  }
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) throw new InvalidOptionsError(`request body over ${MAX_BODY} bytes`);
    chunks.push(c);
  }
  try {
    const v: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("not an object");
    return v as Record<string, unknown>;
  } catch (err) {
    throw new InvalidOptionsError(`the request body must be a JSON object (${(err as Error).message})`);
  }
}
