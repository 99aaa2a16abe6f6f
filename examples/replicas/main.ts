/**
 * Replicas across hosts: three host agents on this machine (distinct host ids, as three
 * machines would run them), a Counter service of three replicas placed one per agent, routed
 * calls, a sticky session, fanout, `actorbus status`, and a replica killed under load.
 *
 *   npx tsx examples/replicas/main.ts          (uses NATS_URL, or starts a private nats-server)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { collectStatus, formatStatus, getServices, startNatsServer, type NatsServerProcess } from "../../src/index.ts";
import { Counter } from "./counter.ts";

const namespace = process.env.ACTORBUS_NAMESPACE ?? "replicas_demo";
let server: NatsServerProcess | undefined;
const url = process.env.NATS_URL ?? (server = await startNatsServer()).url;
const agentMain = fileURLToPath(new URL("../../src/agent/main.ts", import.meta.url));

/** `actorbus agent --host-id <id>` as a child process; resolves once it is ready. */
function startAgent(hostId: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", agentMain, "--servers", url, "--namespace", namespace, "--host-id", hostId, "--cpus", "2"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`agent ${hostId} exited with ${code}`)));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      console.log(line);
      if (line.startsWith(`agent ${hostId} ready`)) resolve(child);
    });
  });
}

const agents = await Promise.all(["host-1", "host-2", "host-3"].map(startAgent));
try {
  const svc = await Counter.options({ numReplicas: 3, maxTaskRetries: 1, namespace, servers: url }).asService(0);
  try {
    const who = await svc.whoami.fanout();
    console.log(`placement: ${who.map((w) => `replica on ${w.host} (pid ${w.pid})`).join(", ")}`);

    const before = svc.status().replicas.map((r) => r.calls);
    for (let i = 0; i < 30; i++) await svc.incr();
    console.log(`30 routed calls, per replica: ${svc.status().replicas.map((r, i) => r.calls - before[i]!).join(" / ")}`);
    console.log(`counts after fanout: ${(await svc.incr.fanout(0)).join(", ")}`);

    const seen = await svc.session(async (s) => [await s.incr(100), await s.incr(100)]);
    console.log(`session (sticky, one replica): ${seen.join(" -> ")}`);

    const services = await getServices({ namespace, servers: url });
    try {
      const h = await services.get<Counter>("counter"); // any worker finds the service by name
      console.log(`through the registry: incr -> ${await h.incr()}`);
      console.log(formatStatus(await collectStatus(services)));
    } finally {
      await services.close();
    }

    // Kill one replica while 60 calls are in flight: with maxTaskRetries 1 none fails.
    const victim = svc.status().replicas[1]!;
    const calls = Array.from({ length: 60 }, () => svc.slowIncr(20).then(() => true, () => false));
    await new Promise((r) => setTimeout(r, 100));
    const killedAt = Date.now();
    process.kill(victim.pids[0]!, "SIGKILL");
    const ok = (await Promise.all(calls)).filter(Boolean).length;
    console.log(`calls under a crash: ${ok} ok, ${60 - ok} failed`);
    while (svc.status().replicas[1]!.state !== "healthy") await new Promise((r) => setTimeout(r, 10));
    const back = svc.status().replicas[1]!;
    console.log(`replica 1 restarted on ${back.hosts.join(",")} in ${Date.now() - killedAt} ms (${back.restarts} restart)`);
  } finally {
    await svc.shutdown();
  }
} finally {
  for (const a of agents) a.kill("SIGTERM");
  await Promise.all(agents.map((a) => (a.exitCode === null ? new Promise((r) => a.once("exit", r)) : undefined)));
  await server?.stop();
}
console.log("done");
