import { parseArgs } from "node:util";
import { InvalidOptionsError } from "../errors/index.ts";
import type { GetServicesOptions } from "../registry/index.ts";

/** Options every command shares: where NATS is and which namespace. Secrets come from env. */
export const COMMON_OPTIONS = {
  namespace: { type: "string", short: "n" },
  servers: { type: "string", short: "s" },
  creds: { type: "string" },
  "inbox-prefix": { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export function parse<T extends Record<string, { type: "string" | "boolean"; short?: string }>>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new InvalidOptionsError(`${(err as Error).message}; see actorbus --help`);
  }
}

export function connectionFrom(values: { namespace?: string; servers?: string; creds?: string; "inbox-prefix"?: string }): GetServicesOptions {
  const o: GetServicesOptions = { namespace: values.namespace ?? process.env.ACTORBUS_NAMESPACE ?? "default", name: "actorbus-cli" };
  if (values.servers) o.servers = values.servers;
  if (values.creds) o.credsFile = values.creds;
  // Credentials by environment rather than flags: flags show up in `ps`.
  if (process.env.NATS_USER) o.user = process.env.NATS_USER;
  if (process.env.NATS_PASSWORD) o.pass = process.env.NATS_PASSWORD;
  if (process.env.NATS_TOKEN) o.token = process.env.NATS_TOKEN;
  if (process.env.NATS_CREDS && !o.credsFile) o.credsFile = process.env.NATS_CREDS;
  // A tenant locked to its namespace may subscribe only to its own reply prefix (see nats.conf).
  const inboxPrefix = values["inbox-prefix"] ?? process.env.NATS_INBOX_PREFIX;
  if (inboxPrefix) o.inboxPrefix = inboxPrefix;
  // The CLI inspects an existing deployment; starting a private server would show nothing.
  o.devServer = "never";
  return o;
}

/** Fixed-width table; the last column is left unpadded. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n");
}
