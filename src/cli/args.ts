import { parseArgs } from "node:util";
import { InvalidOptionsError } from "../errors/index.ts";
import { suggest, type Check } from "../options/index.ts";
import type { GetServicesOptions } from "../registry/index.ts";

/**
 * A mistake in the command line itself (unknown flag, bad flag value, missing argument): the
 * command exits 2, as for an unknown command, so scripts can tell it from a failure at run time.
 */
export class UsageError extends InvalidOptionsError {}

/** Options every command shares: where NATS is and which namespace. Secrets come from env. */
export const COMMON_OPTIONS = {
  namespace: { type: "string", short: "n" },
  servers: { type: "string", short: "s" },
  creds: { type: "string" },
  "inbox-prefix": { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

type OptionSpecs = Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }>;
// Named so declaration emit can spell the return type (node's own config type is not exported).
type Parsed<T extends OptionSpecs> = ReturnType<typeof parseArgs<{ args: string[]; options: typeof COMMON_OPTIONS & T; allowPositionals: true; strict: true }>>;

export function parse<T extends OptionSpecs>(argv: string[], options: T): Parsed<T> {
  try {
    return parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    const e = err as Error & { code?: string };
    const flag = e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" ? /'(-[^']*)'/.exec(e.message)?.[1] : undefined;
    if (flag) {
      const flags = Object.keys({ ...COMMON_OPTIONS, ...options }).map((k) => `--${k}`);
      const guess = suggest(flag, flags);
      throw new UsageError(`unknown option ${flag}${guess ? `; did you mean ${guess}?` : ""}; see actorbus --help`, { details: { option: flag } });
    }
    throw new UsageError(`${e.message}; see actorbus --help`);
  }
}

const NUMERAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * A numeric flag, checked by the same checker as the option it feeds (so `--timeout-ms abc` is
 * refused as `{ timeoutMs: "abc" }` would be, instead of becoming NaN), named as the flag.
 */
export function numericFlag<T>(command: string, flag: string, raw: string | undefined, check: Check<T>): T | undefined {
  if (raw === undefined) return undefined;
  try {
    // Number("") is 0 and Number("0x1f") is 31: only plain numerals count as numbers.
    return check(NUMERAL.test(raw.trim()) ? Number(raw) : raw, `--${flag}`, `actorbus ${command}`);
  } catch (err) {
    throw new UsageError((err as Error).message, { details: { option: `--${flag}` } });
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
