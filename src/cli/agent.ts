import { startAgent } from "../agent/index.ts";
import { createMetrics, serveMetrics, type MetricsServer } from "../metrics/index.ts";
import { int } from "../options/index.ts";
import { agentOptions } from "../agent/options.ts";
import { connectionFrom, numericFlag, parse } from "./args.ts";

export const AGENT_USAGE = `usage: actorbus agent [--namespace N] [--servers URL] [--host-id ID] [--cpus N] [--gpus N|ID,ID,...] [--allow DIR]...
                      [--metrics-port N] [--metrics-host ADDR]

Runs a host agent until SIGINT/SIGTERM: advertises this host's capacity (process slots, GPUs)
in the namespace's registry, starts the replica processes services place here (setting
CUDA_VISIBLE_DEVICES for withGpus), reports their exits, and stops them when their service
goes away. Several agents on one machine need distinct --host-id values.

--gpus takes a count (the first N devices this process may use) or the device ids to hand out,
such as --gpus 0,2,5,7 (one device: --gpus 3,); without it, the ids in this process's
CUDA_VISIBLE_DEVICES. Each withGpus process gets one of those ids as its CUDA_VISIBLE_DEVICES.

Anyone who can publish to the namespace's agent subjects can ask an agent to start a process,
so it only starts modules under the --allow directories (repeatable; default: the working
directory), and refuses environments that set NODE_OPTIONS, LD_*, PYTHONPATH and the like.

--metrics-port N serves Prometheus metrics at http://127.0.0.1:N/metrics (0: a free port, printed):
the agent's process slots and GPUs, its replica processes and their exits. --metrics-host ADDR
binds another address (e.g. 0.0.0.0 for a Prometheus on another machine).`;

/** `actorbus agent`: runs until SIGINT/SIGTERM, then stops its replica processes. */
export async function agentCommand(argv: string[]): Promise<string | void> {
  const { values } = parse(argv, {
    "host-id": { type: "string" },
    cpus: { type: "string" },
    gpus: { type: "string" },
    "heartbeat-ms": { type: "string" },
    allow: { type: "string", multiple: true },
    "metrics-port": { type: "string" },
    "metrics-host": { type: "string" },
  });
  if (values.help) return AGENT_USAGE;
  const metricsPort = numericFlag("agent", "metrics-port", values["metrics-port"], int({ min: 0, max: 65_535, hint: "0 picks a free port" }));
  const metrics = metricsPort === undefined ? undefined : await createMetrics();
  const agent = await startAgent({
    metrics,
    ...connectionFrom(values),
    name: `actorbus-agent-${values["host-id"] ?? "host"}`,
    hostId: values["host-id"],
    cpus: numericFlag("agent", "cpus", values.cpus, agentOptions.spec.cpus),
    gpus: numericFlag("agent", "gpus", values.gpus, agentOptions.spec.gpus),
    heartbeatMs: numericFlag("agent", "heartbeat-ms", values["heartbeat-ms"], agentOptions.spec.heartbeatMs),
    allow: values.allow as string[] | undefined,
  });
  const r = agent.record();
  const gpus = r.gpus ? `${r.gpus} GPUs (${agent.gpuIds.join(",")})` : "0 GPUs";
  let served: MetricsServer | undefined;
  if (metrics) {
    try {
      served = await serveMetrics({ metrics, port: metricsPort, host: values["metrics-host"] as string | undefined });
    } catch (err) {
      await agent.stop();
      throw err;
    }
    console.log(`agent ${agent.hostId} metrics at ${served.url}`);
  }
  console.log(`agent ${agent.hostId} ready: namespace ${agent.namespace}, ${r.cpus} process slots, ${gpus}, pid ${process.pid}, modules under ${agent.allowedRoots.join(", ")}`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await agent.stop();
  await served?.close();
  return `agent ${agent.hostId} stopped`;
}
