import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { bool, defineOptions, durationMs, int, list, str, type SpecFor } from "../options/index.ts";

/**
 * A private nats-server child process: the embedded default (like `ray.init()` starting a local
 * cluster) and the test harness. Storage is a temp dir removed on stop; the port is free and
 * kept across `restart()` so clients can reconnect to the same URL.
 */
export interface NatsServerProcess {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  readonly pid: number | undefined;
  /** SIGKILL (crash) or SIGTERM, then wait for exit. Keeps the store dir. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts again on the same port and store dir (after kill). */
  restart(): Promise<void>;
  /** Stops the server and removes its store dir; idempotent. */
  stop(): Promise<void>;
}

export interface NatsServerSpawnOptions {
  binary?: string;
  jetstream?: boolean;
  port?: number;
  /** Extra lines for a generated config file (cluster, accounts, ...). */
  config?: string;
  /** Extra command-line arguments. */
  args?: string[];
  storeDir?: string;
  startTimeoutMs?: number;
}

/** NATS_SERVER_BIN, then nats-server on PATH, then Debian's location (/usr/sbin is not on every PATH). */
export function findNatsServerBinary(): string | undefined {
  if (process.env.NATS_SERVER_BIN) return process.env.NATS_SERVER_BIN;
  const dirs = (process.env.PATH ?? "").split(delimiter).concat(["/usr/sbin", "/usr/local/sbin"]);
  for (const d of dirs) {
    const p = join(d, "nats-server");
    if (d && existsSync(p)) return p;
  }
  return undefined;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

export function tcpReachable(host: string, port: number, timeoutMs = 300): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

async function waitFor(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

const spawnOptions = defineOptions(
  "startNatsServer options",
  {
    binary: str({ nonEmpty: true, expected: "a path to nats-server" }),
    jetstream: bool(),
    port: int({ min: 1, max: 65_535, hint: "leave it out for a free port" }),
    config: str(),
    args: list(str()),
    storeDir: str({ nonEmpty: true, expected: "a directory path" }),
    startTimeoutMs: durationMs({ min: 1, hint: "how long the server may take to accept connections" }),
  } satisfies SpecFor<NatsServerSpawnOptions>,
  { jetstream: true, startTimeoutMs: 10_000 },
  { example: "{ port: 4222 }" },
);

/**
 * Servers still running, stopped when this process exits without stopping them (a script that
 * ends with process.exit, an uncaught error): nats-server does not notice its parent is gone
 * and would run on, holding its port and temp dir. Process-wide because the exit is; one
 * listener for all of them, so that many servers add no listener each.
 */
const running = new Map<ChildProcess, () => void>();
let exitHookInstalled = false;

function stopOnExit(child: ChildProcess, cleanup: () => void): void {
  running.set(child, cleanup);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const [c, clean] of running) {
      if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
      clean();
    }
  });
}

export async function startNatsServer(given: NatsServerSpawnOptions = {}): Promise<NatsServerProcess> {
  const opts = spawnOptions.parse(given);
  const binary = opts.binary ?? findNatsServerBinary();
  if (!binary) throw new Error("nats-server is not installed: apt-get install nats-server, or set NATS_SERVER_BIN");
  const port = opts.port ?? (await freePort());
  const ownStore = opts.storeDir === undefined;
  const storeDir = opts.storeDir ?? mkdtempSync(join(tmpdir(), "actorbus-nats-"));
  const args = ["-a", "127.0.0.1", "-p", String(port)];
  if (opts.jetstream !== false) args.push("-js", "-sd", join(storeDir, "js"));
  if (opts.config) {
    const conf = join(storeDir, "server.conf");
    writeFileSync(conf, opts.config);
    args.push("-c", conf);
  }
  args.push(...(opts.args ?? []));
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let stderrTail = "";
  const removeOwnStore = () => {
    if (ownStore) rmSync(storeDir, { recursive: true, force: true });
  };

  const launch = async () => {
    const c = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"] });
    child = c;
    stderrTail = "";
    c.stderr!.on("data", (d: Buffer) => (stderrTail = (stderrTail + d.toString()).slice(-4000)));
    stopOnExit(c, removeOwnStore);
    exited = new Promise((r) =>
      c.once("exit", () => {
        running.delete(c);
        r();
      }),
    );
    let spawnError: Error | undefined;
    c.once("error", (e) => (spawnError = e));
    try {
      await waitFor(async () => {
        if (spawnError) throw new Error(`cannot run ${binary}: ${spawnError.message}`);
        if (c.exitCode !== null) throw new Error(`nats-server exited with ${c.exitCode}: ${stderrTail}`);
        return tcpReachable("127.0.0.1", port, 200);
      }, opts.startTimeoutMs, `nats-server on port ${port}`);
    } catch (e) {
      c.kill("SIGKILL");
      throw e;
    }
  };

  const kill = async (signal: NodeJS.Signals = "SIGKILL") => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill(signal);
    await exited;
  };

  try {
    await launch();
  } catch (e) {
    removeOwnStore();
    throw e;
  }
  let stopped = false;
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    get pid() {
      return child?.pid;
    },
    kill,
    restart: launch,
    async stop() {
      if (stopped) return;
      stopped = true;
      await kill("SIGTERM");
      removeOwnStore();
    },
  };
}
