/**
 * The process of one replica rank: started by a Supervisor (agent or embedded) with an IPC
 * channel, it receives its spec, imports the user's module, constructs the class with the
 * constructor arguments, and serves it on subjects.replica(groupId, rank).
 *
 *   node --import tsx replica-main.ts --namespace <ns> --proc <procId>
 */
import type { StartMessage } from "../agent/protocol.ts";
import { createActorHost, instantiate, resolveActorOptions, type ActorHost } from "../actor/index.ts";
import { connectBus, type BusConnection } from "../connection/index.ts";
import { ActorBusError, errorToWire } from "../errors/index.ts";
import { QUEUE_REPLICAS, subjectsFor } from "../subjects/index.ts";
import { reportVersions } from "./replica-version.ts";
import { encodeVersionReport } from "./versions.ts";

if (!process.send) {
  console.error("replica-main.ts is started by an actorbus agent or service, not by hand");
  process.exit(2);
}

let host: ActorHost | undefined;
let conn: BusConnection | undefined;
let exiting = false;

async function exit(code: number, graceMs: number): Promise<void> {
  if (exiting) return;
  exiting = true;
  const hard = setTimeout(() => process.exit(code), graceMs + 2_000);
  hard.unref();
  try {
    await host?.stop(graceMs);
    await conn?.close();
  } finally {
    process.exit(code);
  }
}

async function loadClass(moduleUrl: string, exportName: string): Promise<unknown> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(moduleUrl)) as Record<string, unknown>;
  } catch (err) {
    throw new ActorBusError(`cannot import ${moduleUrl}: ${(err as Error)?.message ?? err}`, { cause: err });
  }
  const cls = mod[exportName];
  if (typeof cls !== "function") {
    throw new ActorBusError(`${moduleUrl} has no exported class "${exportName}" in the replica process; exports: ${Object.keys(mod).join(", ") || "(none)"}`);
  }
  return cls;
}

async function serve(msg: StartMessage): Promise<void> {
  const { spec, connection } = msg;
  // Secrets never travel in the spec, nor in this process's environment (the supervisor removes
  // them): the spawner's credentials come over this IPC channel.
  conn = await connectBus({
    servers: connection.servers,
    ...connection.auth,
    ...(connection.inboxPrefix ? { inboxPrefix: connection.inboxPrefix } : {}),
    name: `actorbus-replica-${spec.label}`,
    devServer: "never",
  });
  const cls = await loadClass(spec.moduleUrl, spec.exportName);
  const instance = await instantiate(cls, spec.args);
  // ForgeActor's convention: the constructor takes data, an async setup() does heavy work, and
  // its failure reaches whoever launched the replica.
  const setup = (instance as { setup?: unknown }).setup;
  if (typeof setup === "function") await setup.call(instance);
  const subjects = subjectsFor(spec.namespace);
  // Before serving: the controller learns the version this process starts at.
  const versions = subjects.versions(spec.controllerId);
  const c = conn;
  reportVersions(instance, (v) => c.transport.publish(versions, encodeVersionReport(c.codec, spec.groupId, spec.rank, v)));
  const callSubjects: { subject: string; queue?: string }[] = [{ subject: subjects.replica(spec.groupId, spec.rank) }];
  if (spec.queueGroup) callSubjects.push({ subject: subjects.replicaQueue(spec.service), queue: QUEUE_REPLICAS });
  host = createActorHost({
    conn,
    subjects,
    name: spec.service,
    instance,
    instanceId: spec.procId,
    hostId: msg.hostId,
    options: resolveActorOptions(spec.actor, `replica ${spec.label}`),
    callSubjects,
    rollable: true,
    onRemoteStop: () => void exit(0, 0),
  });
  await host.listenControl();
  await host.listenCalls();
  process.send!({ type: "ready", pid: process.pid });
}

const startTimer = setTimeout(() => {
  console.error("no start message from the spawner within 30 s");
  process.exit(2);
}, 30_000);

process.once("message", (msg: StartMessage) => {
  clearTimeout(startTimer);
  serve(msg).catch((err) => {
    process.send!({ type: "failed", error: errorToWire(err) }, () => void exit(1, 0));
  });
});
// The spawner (agent or service controller) is gone: nobody would route to us or stop us.
process.once("disconnect", () => void exit(0, 0));
process.once("SIGTERM", () => void exit(0, host ? 5_000 : 0));
process.once("SIGINT", () => void exit(0, 0));
