import type { ServerResponse } from "node:http";

/** Comment lines keep idle streams open through proxies that close silent connections. */
const KEEPALIVE_MS = 15_000;

/**
 * The pages watching, as server-sent event streams. A write to a page that cannot keep up is
 * skipped rather than buffered without bound: the next snapshot carries the whole state again.
 */
export class EventStreams {
  private readonly clients = new Set<ServerResponse>();
  private readonly keepalive: NodeJS.Timeout;

  constructor() {
    this.keepalive = setInterval(() => {
      for (const c of this.clients) c.write(": keepalive\n\n");
    }, KEEPALIVE_MS);
    this.keepalive.unref();
  }

  get size(): number {
    return this.clients.size;
  }

  /** Starts a stream on `res`; `greet` writes what a new page needs before anything else. */
  open(res: ServerResponse, greet: (send: (event: string, data: unknown) => void) => void): void {
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
      // A reverse proxy (nginx) in front must pass events on as they come, not buffer them.
      "x-accel-buffering": "no",
    });
    // The page reconnects by itself (EventSource); this is how soon after a drop.
    res.write("retry: 1000\n\n");
    greet((event, data) => write(res, event, data));
    this.clients.add(res);
    res.once("close", () => this.clients.delete(res));
  }

  send(event: string, data: unknown): void {
    if (this.clients.size === 0) return;
    const frame = format(event, data);
    for (const c of this.clients) {
      if (c.writableNeedDrain && event === "snapshot") continue;
      c.write(frame);
    }
  }

  close(): void {
    clearInterval(this.keepalive);
    for (const c of this.clients) c.end();
    this.clients.clear();
  }
}

const format = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
const write = (res: ServerResponse, event: string, data: unknown) => res.write(format(event, data));
