import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** Pids of replica processes of one namespace, from the process table (what `ps` shows). */
export function replicaPids(namespace: string): number[] {
  const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
  return out
    .split("\n")
    .filter((l) => l.includes("replica-main.ts") && l.includes(`--namespace ${namespace} `))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function loadSchema(name: "ping_response" | "info_response" | "stats_response"): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`../service/schemas/${name}.json`, import.meta.url), "utf8"));
}

const AGENT_MAIN = fileURLToPath(new URL("../../src/agent/main.ts", import.meta.url));

export interface AgentProcess {
  child: ChildProcess;
  hostId: string;
  output: string[];
  /** SIGTERM (graceful: stops its replicas) and wait for exit. */
  stop(): Promise<void>;
  kill(): Promise<void>;
}

const agents = new Set<AgentProcess>();

/** Starts `actorbus agent` as its own process (a simulated host) and waits for its ready line. */
export async function startAgentProcess(url: string, namespace: string, hostId: string, extra: string[] = [], env?: NodeJS.ProcessEnv): Promise<AgentProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", AGENT_MAIN, "--servers", url, "--namespace", namespace, "--host-id", hostId, ...extra], {
    stdio: ["ignore", "pipe", "inherit"],
    env: env ? { ...process.env, ...env } : process.env,
  });
  const output: string[] = [];
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const ready = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`agent ${hostId} not ready within 20 s`)), 20_000);
    child.once("exit", (code) => reject(new Error(`agent ${hostId} exited with ${code}: ${output.join("\n")}`)));
    createInterface({ input: child.stdout! }).on("line", (l) => {
      output.push(l);
      if (l.startsWith(`agent ${hostId} ready`)) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  const a: AgentProcess = {
    child,
    hostId,
    output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
      agents.delete(a);
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
      agents.delete(a);
    },
  };
  agents.add(a);
  await ready;
  return a;
}

/** For after hooks: no agent process outlives its suite. */
export async function stopAllAgents(): Promise<void> {
  await Promise.all([...agents].map((a) => a.stop()));
}
