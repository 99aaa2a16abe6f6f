import { defineOptions, durationMs, fn, int, obj } from "../options/index.ts";

/**
 * Where hosts (actor hosts, agents, inference servers) report inbound messages they cannot serve:
 * undecodable payloads, requests of the wrong shape, requests without a reply subject, replies
 * too large to send. Anything with `warn(event, details)` fits (console, pino, a test capture).
 */
export interface Logger {
  warn(event: string, details?: Record<string, unknown>): void;
}

export interface RateLimitOptions {
  /** Lines passed on per interval; the rest are counted into one summary line. Default 10. */
  maxLines?: number;
  /** Length of one counting window. Default 10000 ms. */
  intervalMs?: number;
  /** Clock, for tests. Default Date.now. */
  now?: () => number;
}

/** A limiter around a sink; `flush()` writes the pending summary now and cancels its timer. */
export interface RateLimitedLogger extends Logger {
  flush(): void;
}

const RATE_LIMIT_OPTIONS = defineOptions(
  "rateLimitedLogger options",
  {
    maxLines: int({ min: 1, hint: "lines passed on per interval" }),
    intervalMs: durationMs({ min: 1, hint: "the length of one counting window" }),
    now: fn<() => number>("a clock such as Date.now"),
  },
  { maxLines: 10, intervalMs: 10_000, now: Date.now },
  { example: "{ maxLines: 10, intervalMs: 10_000 }" },
);

const MAX_TEXT = 200;

/** Text from hostile input (error messages, method names) is cut so one log line stays small. */
export function brief(text: unknown, max = MAX_TEXT): string {
  let s: string;
  try {
    s = typeof text === "string" ? text : text instanceof Error ? String(text.message) : String(text);
  } catch {
    s = `(${typeof text} that cannot be shown)`; // String() throws on objects with a broken toString
  }
  return s.length <= max ? s : `${s.slice(0, max)}... (${s.length} chars)`;
}

/** One line per warning on stderr: `actorbus: <event> <details as JSON>`. */
export function stderrLogger(): Logger {
  return {
    warn(event, details) {
      let json = "";
      if (details && Object.keys(details).length > 0) {
        try {
          json = ` ${JSON.stringify(details, (_k, v) => (typeof v === "bigint" ? v.toString() : v))}`;
        } catch {
          json = " (details not serialisable)";
        }
      }
      console.error(`actorbus: ${event}${json}`);
    },
  };
}

/**
 * At most `maxLines` lines per `intervalMs` reach `sink`; what is held back is reported as one
 * "N similar messages suppressed" line when the window ends. Each host makes its own, so one
 * flooded host neither floods the log nor silences another host's warnings.
 */
export function rateLimitedLogger(sink: Logger = stderrLogger(), opts: RateLimitOptions = {}): RateLimitedLogger {
  checkLogger("rateLimitedLogger", sink, "sink");
  const { maxLines, intervalMs, now } = RATE_LIMIT_OPTIONS.parse(opts);
  let windowStart = now();
  let lines = 0;
  let suppressed = 0;
  const byEvent = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;

  // A sink that throws must not turn a bad message into a failing host.
  const write = (event: string, details?: Record<string, unknown>) => {
    try {
      sink.warn(event, details);
    } catch {
      // nowhere left to report it
    }
  };

  const summarise = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (suppressed === 0) return;
    const events = Object.fromEntries(byEvent);
    const n = suppressed;
    suppressed = 0;
    byEvent.clear();
    write(`${n} similar messages suppressed`, { suppressed: n, events, intervalMs });
  };

  return {
    warn(event, details) {
      const t = now();
      if (t - windowStart >= intervalMs) {
        summarise();
        windowStart = t;
        lines = 0;
      }
      if (lines < maxLines) {
        lines++;
        write(event, details);
        return;
      }
      suppressed++;
      byEvent.set(event, (byEvent.get(event) ?? 0) + 1);
      // Without a timer the summary would wait for the next bad message, maybe forever.
      if (!timer) {
        timer = setTimeout(() => {
          timer = undefined;
          summarise();
          windowStart = now();
          lines = 0;
        }, Math.max(0, windowStart + intervalMs - t));
        timer.unref();
      }
    },
    flush: summarise,
  };
}

/** The `logger` option of every host's options. */
export const loggerCheck = obj<Logger>("pass something with warn(event, details), such as { warn: (e, d) => console.error(e, d) }", ["warn"]);

/** Undefined stays undefined (the caller's default applies), anything else must have warn(). */
export function checkLogger(where: string, v: unknown, key = "logger"): Logger | undefined {
  return v === undefined ? undefined : loggerCheck(v, key, where);
}
