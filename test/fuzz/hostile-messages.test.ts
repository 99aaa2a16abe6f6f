import { expect } from "chai";
import { connect as tcpConnect } from "node:net";
import { connect, headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { startAgent, type Agent } from "../../src/agent/index.ts";
import { isChunkRef } from "../../src/chunks/index.ts";
import { createCodec } from "../../src/codec/index.ts";
import { connectBus, createLocalBus, localConnection, rateLimitedLogger, startNatsServer, type BusConnection, type Logger, type NatsServerProcess } from "../../src/connection/index.ts";
import { ActorBusError, errorFromWire, InvalidOptionsError, type WireError } from "../../src/errors/index.ts";
import { InferenceServer, NatsTransport, type TensorBatch, type TensorRecord } from "../../src/inference/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { uniqueNamespace, until } from "../helpers/nats.ts";
import { doubling, obs } from "../inference/helpers.ts";

/*
 * Hostile messages (issue 6): thousands of random, truncated, wrongly shaped, oddly headed and
 * oversize messages to the subjects of an actor host, a host agent and an inference server.
 * Every one that has a reply subject must get a reply (a typed error, or a normal answer when
 * the garbage happens to be a valid call), the hosts must keep serving, and what they log about
 * it must stay bounded. FUZZ_SEED=<n> replays a run.
 */

const MAX_PAYLOAD = 128 * 1024; // small, so near-limit messages are cheap to send by the hundred
const REPLY_DEADLINE_MS = 8_000;
const CONCURRENCY = 150;
const LOG_LINES = 10; // the hosts' default limit: 10 lines per 10 s, plus one summary
const LOG_INTERVAL_MS = 10_000;

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    chance: (p: number) => next() < p,
    pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!,
    bytes(n: number): Uint8Array {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
    ascii(n: number): string {
      let s = "";
      for (let i = 0; i < n; i++) s += String.fromCharCode(33 + int(94));
      return s;
    },
  };
}
type Rng = ReturnType<typeof prng>;

/** What the user code of this file throws on bad input; any other RemoteError is a library bug. */
class UserInputError extends Error {
  override name = "UserInputError";
}

class FuzzTarget {
  echo(x: unknown) {
    return x;
  }
  add(a: unknown, b: unknown) {
    try {
      return (a as number) + (b as number); // garbage in: string concatenation, NaN or a TypeError
    } catch (err) {
      throw new UserInputError((err as Error).message);
    }
  }
  /** A result larger than the server's max_payload: the host must say so, not go quiet. */
  blowup(n: unknown) {
    let size: number;
    try {
      size = Number(n) || 0; // an object whose valueOf/toString are not functions throws TypeError
    } catch (err) {
      throw new UserInputError((err as Error).message);
    }
    return new Uint8Array(Math.min(Math.max(0, size), 4 * MAX_PAYLOAD));
  }
}

type Target = "call" | "control" | "instance" | "agent" | "inference";

interface Case {
  target: Target;
  kind: string;
  data: Uint8Array;
  headers?: MsgHdrs;
  /** Request (wait for a reply) or fire-and-forget publish. */
  request: boolean;
}

/** Codes a reply may carry per target; a REMOTE error is only fine where user code runs. */
const ALLOWED: Record<Target, string[]> = {
  call: ["CODEC", "METHOD_NOT_FOUND", "REMOTE", "OVERLOADED", "CALL_TIMEOUT"],
  control: ["CODEC"],
  instance: ["CODEC"],
  agent: ["CODEC"],
  inference: ["CODEC", "TENSOR_RECORD", "REMOTE", "INFERENCE_RESULT_COUNT", "OVERLOADED", "CALL_TIMEOUT"],
};

/** The policy of the inference tests, refusing inputs it cannot take the way a real model would. */
function model(batch: TensorBatch) {
  if (!(batch.data.observation instanceof Float32Array)) throw new UserInputError("the policy takes { observation: Float32Array }");
  return doubling(batch);
}

/** A logger that keeps what it is given, per host. */
function capture(): Logger & { lines: { event: string; details?: Record<string, unknown> }[] } {
  const lines: { event: string; details?: Record<string, unknown> }[] = [];
  return { lines, warn: (event, details) => void lines.push({ event, details }) };
}

const codec = createCodec();
const STRINGS = ["", "ping", "stats", "list", "spawn", "echo", "add", "__proto__", "constructor", "then", "toString", "hasOwnProperty", "STOP", "Stop", "op", "\u0000", "😀".repeat(3)];
const KEYS = ["op", "procs", "procIds", "graceMs", "startTimeoutMs", "seq", "data", "shape", "observation", "method", "args", "timeoutMs", "x", "constructor", "toString", "valueOf", "name", "__proto__", "then"];

/** Any value the codec can encode, nested up to `depth`; never the string "stop" (a valid stop would end the host). */
function garbage(r: Rng, depth = 3): unknown {
  switch (r.int(depth > 0 ? 14 : 10)) {
    case 0: return r.pick([0, -1, 1, 255, 2 ** 31, -(2 ** 31) - 1, 2 ** 53 + 2, Number.MAX_SAFE_INTEGER, -Number.MAX_VALUE]);
    case 1: return r.pick([NaN, Infinity, -Infinity, -0, 1e308, 5e-324, r.next()]);
    case 2: return r.pick(STRINGS);
    case 3: return r.ascii(r.int(40));
    case 4: return r.pick([true, false, null, undefined]);
    case 5: return r.pick([0n, 1n, -(2n ** 70n), 2n ** 64n + 1n]);
    case 6: return r.bytes(r.int(64));
    case 7: return r.pick([new Float32Array([NaN, 1]), new Int32Array(3), new BigInt64Array([-1n]), new Float64Array(0), new Uint16Array([65535])]);
    case 8: return new Date(r.int(2 ** 40));
    case 9: return r.int(1_000_000) - 500_000;
    case 10: return Array.from({ length: r.int(5) }, () => garbage(r, depth - 1));
    case 11: return Object.fromEntries(Array.from({ length: r.int(5) }, () => [r.chance(0.6) ? r.pick(KEYS) : r.ascii(1 + r.int(8)), garbage(r, depth - 1)]));
    case 12: return new Map([[garbage(r, 0), garbage(r, depth - 1)]]);
    default: return new Set([garbage(r, depth - 1), garbage(r, 0)]);
  }
}

const enc = (v: unknown) => codec.encode(v);

/** The args of an echo call, [ [[[...null]]] ], nested past what the encoder accepts, so the echo cannot be sent back. */
function deepCall(depth: number): Uint8Array {
  return Uint8Array.from([0x91, ...new Array(depth).fill(0x91), 0xc0]);
}

/** Maps inside Maps (msgpack ext 2), `depth` deep: each level is decoded by a nested decoder. */
function deepMaps(depth: number): Uint8Array {
  // Level i is ext32(type 2, [[1, level i-1]]): a 6-byte ext header, 3 bytes of array heads, then
  // the inner level, so it is 9 bytes longer than that level. Written outermost first.
  const out = new Uint8Array(9 * depth + 1);
  for (let i = 0; i < depth; i++) {
    const n = 3 + 9 * (depth - 1 - i) + 1; // body length: array heads + inner level
    out.set([0xc9, (n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255, 2, 0x91, 0x92, 0x01], 9 * i);
  }
  out[9 * depth] = 0xc0;
  return out;
}

/** The args of an echo call, [value], around already encoded `value` bytes. */
function echoOf(value: Uint8Array): Uint8Array {
  return Uint8Array.from([0x91, ...value]);
}

/** A call's context header (src/call/wire.ts): what every call to an actor carries. */
function callHeaders(method: string, timeout: unknown = 5_000, callId = "fuzz.1"): MsgHdrs {
  const h = natsHeaders();
  h.set("Ab-Call", `${String(timeout)} ${callId} ${method}`);
  return h;
}

/** A call header with some field wrong, or missing, or metadata that is not a string map. */
function hostileCallHeaders(r: Rng): MsgHdrs {
  const method = r.chance(0.6) ? r.pick(["echo", "add", "blowup"]) : r.ascii(1 + r.int(20)).replace(/[\r\n]/g, "x");
  const timeout = r.chance(0.5) ? 5_000 : r.pick([1, -1, 0, "NaN", "Infinity", "1e308", "abc", "", 2 ** 53]);
  const callId = r.chance(0.8) ? `fuzz.${r.int(1e6)}` : r.pick(["", " ", "x".repeat(200)]);
  const h = natsHeaders();
  const value = r.chance(0.15) ? r.pick(["", "5000", "5000 id", r.ascii(30).replace(/[\r\n]/g, "x")]) : `${timeout} ${callId} ${method}`;
  h.set("Ab-Call", value);
  if (r.chance(0.2)) h.set("Ab-Meta", r.pick(["{", "[]", '{"a":1}', '{"a":"b"}', `{"${"k".repeat(100)}":"v"}`, "x".repeat(9_000)]));
  return h;
}

/** msgpack ext 4 (BigInt as decimal text) with text that is not a number: its decode error quotes it. */
function badBigInt(textBytes: number): Uint8Array {
  const text = new Uint8Array(textBytes).fill(0x31);
  text[textBytes - 1] = 0x78; // "111...1x"
  const head = Uint8Array.from([0xc9, (textBytes >>> 24) & 255, (textBytes >>> 16) & 255, (textBytes >>> 8) & 255, textBytes & 255, 4]);
  const out = new Uint8Array(head.length + text.length);
  out.set(head);
  out.set(text, head.length);
  return out;
}

function spec(over: Record<string, unknown>): Record<string, unknown> {
  return {
    namespace: "fuzz", service: "svc", controllerId: "c1", groupId: "g1", procId: "g1-0", rank: 0, size: 1,
    moduleUrl: "file:///nonexistent/module.ts", exportName: "X", args: [], env: {}, label: "svc#0.0",
    actor: { maxConcurrency: 1, maxPending: 1, timeoutMs: 1000, drainTimeoutMs: 0 }, queueGroup: false, gpu: false,
    ...over,
  };
}

/** A spawn request with exactly one field of a ProcSpec wrong: it must never start a process. */
function brokenSpawn(r: Rng): unknown {
  const field = r.pick(["namespace", "rank", "size", "args", "actor", "queueGroup", "env", "label", "moduleUrl", "procId"]);
  const wrong: Record<string, unknown> = {
    namespace: 5, rank: -1, size: 0, args: "x", actor: { maxConcurrency: "1" }, queueGroup: "yes", env: { A: 1 }, label: null, moduleUrl: 7n, procId: ["x"],
  };
  return { op: "spawn", procs: [spec({ [field]: wrong[field] })], startTimeoutMs: r.pick([1000, NaN, -1, 1e12, "5"]) };
}

function validRequest(target: Target, leaseSubject: string, r: Rng): unknown {
  switch (target) {
    case "call": return [garbage(r, 2)]; // the args; the method and deadline are in the header
    case "control":
    case "instance": return { op: r.pick(["ping", "stats"]) };
    case "agent": return r.pick([{ op: "ping" }, { op: "list" }, { op: "stop", procIds: ["none"], graceMs: 0 }]);
    case "inference": return [r.int(1e6), leaseSubject, 5_000, 1_000, obs(r.next(), r.next())];
  }
}

/** Valid msgpack of the wrong shape, aimed at what each target parses. */
function wrongShape(target: Target, leaseSubject: string, r: Rng): unknown {
  switch (target) {
    case "call":
      // The payload is the argument array; hostileCallHeaders() spoils the header.
      return r.chance(0.6) ? Array.from({ length: r.int(4) }, () => garbage(r, 2)) : garbage(r, 2);
    case "control":
    case "instance":
      return r.chance(0.8) ? { op: r.chance(0.5) ? r.pick(["ping", "stats", "STOP", 5, 5n, null, ["stop"]]) : garbage(r, 1), graceMs: garbage(r, 1) } : garbage(r);
    case "agent":
      if (r.chance(0.3)) return brokenSpawn(r);
      if (r.chance(0.3)) return { op: "stop", procIds: r.pick([5, "x", [1, 2], null, ["a", 3]]), graceMs: r.pick([0, NaN, -5, 1e300, "0"]) };
      return r.chance(0.7) ? { op: r.chance(0.5) ? r.pick(["ping", "list", "spawn", 1, 2n, null]) : garbage(r, 1), procs: garbage(r, 2), procIds: garbage(r, 1) } : garbage(r);
    case "inference": {
      // Each field is right often enough that all four are, and the input reaches the model.
      const seq = r.chance(0.7) ? r.int(1e6) : r.pick([-1, 2 ** 60, NaN, 1.5, "1", 3n]);
      const lease = r.chance(0.7) ? leaseSubject : r.pick(["", ">", "ab.other.inf.policy.lease.x", `${leaseSubject}.more`, `${leaseSubject.slice(0, -3)}*`, 5]);
      const deadline = r.chance(0.7) ? 5_000 : r.pick([1, 0, -5, NaN, Infinity, "5000", 1e300]);
      const leaseMs = r.chance(0.7) ? 1_000 : r.pick([0, 19, NaN, 1e300, "1000"]);
      const input = r.pick<unknown>([
        obs(1, 2), { observation: new Float64Array(2) }, { x: new Float32Array(2) }, { observation: [1, 2] },
        { observation: { data: new Float32Array(5), shape: [2, 2] } }, { observation: { data: new Float32Array(2), shape: [2n] } }, garbage(r, 2),
      ]);
      const v = [seq, lease, deadline, leaseMs, input];
      return r.chance(0.15) ? v.slice(0, r.int(5)) : v;
    }
  }
}

/** Headers other than a call's own: whatever they claim, they must be ignored (inference deadlines travel in the body). */
function garbageHeaders(r: Rng): MsgHdrs {
  const h = natsHeaders();
  const n = 1 + r.int(4);
  for (let i = 0; i < n; i++) {
    const key = r.pick(["Nats-Msg-Id", "Nats-Expected-Stream", "timeoutMs", "Deadline", "Nats-Request-Info", "Content-Type", `X-${r.ascii(6).replace(/[^A-Za-z0-9]/g, "a")}`]);
    h.append(key, r.pick(["-1", "NaN", "1e309", "", "{", "not json", r.ascii(20).replace(/:/g, ";")]));
  }
  return h;
}

function makeCases(r: Rng, subjects: Record<Target, string>, leaseSubject: string, count: number): Case[] {
  const targets: Target[] = ["call", "call", "control", "instance", "agent", "agent", "inference", "inference"];
  const cases: Case[] = [];
  for (let i = 0; i < count; i++) {
    const target = r.pick(targets);
    const roll = r.next();
    let kind: string;
    let data: Uint8Array;
    if (roll < 0.2) {
      kind = "random bytes";
      data = r.bytes(r.chance(0.9) ? r.int(200) : r.int(8_000));
    } else if (roll < 0.4) {
      kind = "truncated";
      const full = enc(validRequest(target, leaseSubject, r));
      data = full.subarray(0, r.int(full.length));
    } else if (roll < 0.93) {
      kind = "wrong shape";
      data = enc(wrongShape(target, leaseSubject, r));
    } else {
      kind = "valid";
      data = enc(validRequest(target, leaseSubject, r));
    }
    let headers = r.chance(0.15) ? garbageHeaders(r) : undefined;
    if (target === "call" && !headers) headers = kind === "valid" || kind === "truncated" ? callHeaders("echo") : r.chance(0.8) ? hostileCallHeaders(r) : undefined;
    cases.push({ target, kind, data, request: r.chance(0.75), headers });
  }
  // Fixed hard cases: each once per target, as request and as publish.
  const near = MAX_PAYLOAD - 512;
  for (const target of Object.keys(subjects) as Target[]) {
    const special: [string, Uint8Array][] = [
      ["empty", new Uint8Array(0)],
      ["near max_payload, random", r.bytes(near)],
      ["near max_payload, BigInt text", badBigInt(near)],
      ["deep nesting", deepCall(5_000)],
      ["deep Map nesting (decoder stack)", echoOf(deepMaps(3_000))],
      ["deep Map nesting (encoder stack)", echoOf(deepMaps(1_000))],
      ["too many args", enc(new Array(70_000).fill(0))],
    ];
    const callSpecial: [string, Uint8Array, MsgHdrs][] = [];
    if (target === "call") {
      callSpecial.push(
        ["near max_payload method name", enc([]), callHeaders(r.ascii(near).replace(/[\r\n:]/g, "x"))],
        ["near max_payload echo", enc([new Uint8Array(near)]), callHeaders("echo")],
        ["result over max_payload", enc([2 * MAX_PAYLOAD]), callHeaders("blowup")],
      );
    }
    if (target === "control" || target === "instance") special.push(["near max_payload op", enc({ op: r.ascii(near) })]);
    if (target === "agent") special.push(["near max_payload ping", enc({ op: "ping", pad: new Uint8Array(near) })], ["near max_payload op", enc({ op: r.ascii(near) })]);
    if (target === "inference") {
      special.push(["near max_payload input", enc([1, leaseSubject, 5_000, 1_000, { observation: new Float32Array(Math.floor(near / 4) - 64) }])]);
    }
    for (const [kind, data] of special) {
      for (const request of [true, false]) cases.push({ target, kind, data, request, ...(target === "call" ? { headers: callHeaders("echo") } : {}) });
    }
    for (const [kind, data, headers] of callSpecial) for (const request of [true, false]) cases.push({ target, kind, data, request, headers });
  }
  return cases;
}

/** Runs `fn` over `items` with at most `n` at once. */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

/** A raw TCP client speaking the NATS protocol, for what nats.js refuses to send. */
async function rawClient(port: number): Promise<{ write(b: Uint8Array): void; ping(): Promise<string>; closed: Promise<string>; close(): void }> {
  const s = tcpConnect({ host: "127.0.0.1", port });
  let text = "";
  const waiters: (() => void)[] = [];
  s.on("data", (d: Buffer) => {
    text += d.toString("latin1");
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<string>((resolve) => s.once("close", () => resolve(text)));
  s.on("error", () => {});
  await new Promise<void>((resolve) => waiters.push(resolve)); // INFO
  s.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":false,"protocol":1}\r\n`);
  return {
    write: (b) => void s.write(b),
    async ping() {
      const before = text.length;
      s.write("PING\r\n");
      await until(() => text.indexOf("PONG", before) >= 0 || text.includes("-ERR") || s.destroyed, 10_000, "PONG from the server");
      return text;
    },
    closed,
    close: () => s.destroy(),
  };
}

function hpub(subject: string, reply: string | undefined, header: Uint8Array, body: Uint8Array): Uint8Array {
  const line = `HPUB ${subject}${reply ? ` ${reply}` : ""} ${header.length} ${header.length + body.length}\r\n`;
  return Buffer.concat([Buffer.from(line), header, body, Buffer.from("\r\n")]);
}

describe("hostile messages to actor, agent and inference hosts", function () {
  this.timeout(60_000);
  const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32));
  const ns = uniqueNamespace("fuzz");
  const logs = { actor: capture(), agent: capture(), inference: capture() };
  let server: NatsServerProcess;
  let services: Services;
  let agentConn: BusConnection;
  let agent: Agent;
  let infConn: BusConnection;
  let infTransport: NatsTransport<TensorRecord, TensorRecord>;
  let infServer: InferenceServer<TensorRecord, TensorRecord, any, any>;
  let clientConn: BusConnection;
  let infClient: NatsTransport<TensorRecord, TensorRecord>;
  let fuzz: NatsConnection;
  let subjects: Record<Target, string>;
  let leaseSubject: string;
  const unhandled: unknown[] = [];
  let barrageMs = 20_000;
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);

  before(async () => {
    console.log(`      hostile-messages seed ${seed} (FUZZ_SEED=${seed} replays this run)`);
    process.on("unhandledRejection", onUnhandled);
    server = await startNatsServer({ config: `max_payload: ${MAX_PAYLOAD}\n` });
    services = await getServices({ namespace: ns, servers: server.url, logger: logs.actor });
    await services.registerWithOptions("target", FuzzTarget, { maxConcurrency: 4 });
    const instanceId = (await services.status())[0]!.instances[0]!.info.instanceId;
    agentConn = await connectBus({ servers: server.url });
    agent = await startAgent({ connection: agentConn, namespace: ns, hostId: "fuzz-host", cpus: 2, logger: logs.agent });
    infConn = await connectBus({ servers: server.url });
    infTransport = new NatsTransport({ connection: infConn, namespace: ns, name: "policy", logger: logs.inference });
    infServer = new InferenceServer(model, infTransport, { maxBatchSize: 32 }).start();
    await infServer.ready();
    clientConn = await connectBus({ servers: server.url });
    infClient = new NatsTransport({ connection: clientConn, namespace: ns, name: "policy" });
    fuzz = await connect({ servers: server.url, maxReconnectAttempts: 0 });
    const sub = subjectsFor(ns);
    subjects = { call: sub.call("target"), control: sub.control("target"), instance: sub.instance(instanceId), agent: sub.agent("fuzz-host"), inference: sub.inference("policy") };
    leaseSubject = sub.inferenceLease("policy", "fuzzclient");
  });

  after(async () => {
    process.off("unhandledRejection", onUnhandled);
    // Every step runs, bounded, so that a host broken by the barrage cannot keep the server alive.
    const step = (f: () => Promise<unknown> | undefined) =>
      Promise.race([Promise.resolve().then(f).catch(() => {}), new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
    await step(() => fuzz?.close());
    await step(() => infClient?.close());
    await step(() => clientConn?.close());
    await step(() => infServer?.shutdown());
    await step(() => infTransport?.close());
    await step(() => infConn?.close());
    await step(() => agent?.stop());
    await step(() => agentConn?.close());
    await step(() => services?.reset());
    await step(() => services?.close());
    await server?.stop();
  });

  it("answers every request with a typed error or a normal result, and keeps serving callers during the barrage", async () => {
    const r = prng(seed);
    const cases = makeCases(r, subjects, leaseSubject, 5_000);
    const t0 = Date.now();
    const failures: string[] = [];
    const codes = new Map<string, number>();
    const count = (k: string) => codes.set(k, (codes.get(k) ?? 0) + 1);

    const check = (c: Case, reply: Uint8Array, where: string) => {
      // A result over the chunk threshold comes back as a reference to pull (src/chunks).
      if ((c.target === "call" || c.target === "inference") && isChunkRef(reply)) return void count(`${c.target} chunked`);
      let decoded: unknown;
      try {
        decoded = codec.decode(reply);
      } catch (err) {
        return void failures.push(`${where}: reply does not decode (${(err as Error).message})`);
      }
      if (!Array.isArray(decoded) || (decoded[0] !== 0 && decoded[0] !== 1)) return void failures.push(`${where}: reply is not [0, result] | [1, error]`);
      if (decoded[0] === 0) return void count(`${c.target} ok`);
      const wire = decoded[1] as WireError;
      const err = errorFromWire(wire);
      count(`${c.target} ${wire?.code}`);
      if (!(err instanceof ActorBusError) || err.code !== wire.code || err.code === "ACTORBUS") return void failures.push(`${where}: untyped error ${JSON.stringify(wire?.code)}: ${wire?.message}`);
      if (!ALLOWED[c.target].includes(err.code)) return void failures.push(`${where}: unexpected ${err.code} (${err.name}: ${err.message.slice(0, 200)})`);
      // A RemoteError is the user code's (an actor method, the model) or a library bug.
      if (err.code === "REMOTE" && err.details.remoteName !== "UserInputError") {
        failures.push(`${where}: RemoteError not thrown by user code: ${String(err.details.remoteName)}: ${err.message.slice(0, 200)} ${String(err.details.remoteStack).split("\n")[1]}`);
      }
    };

    // Legitimate callers keep calling throughout: a hostile message must not fail them.
    const handle = await services.get<FuzzTarget>("target");
    let barrageDone = false;
    let legitCalls = 0;
    const legit: Promise<unknown> = (async () => {
      while (!barrageDone) {
        const x = legitCalls++;
        const [a, b] = await Promise.all([handle.add(x, 1), infClient.submit(obs(x, -x), { timeoutMs: 10_000 })]);
        expect(a).to.equal(x + 1);
        expect([...(b.action as Float32Array)]).to.deep.equal([2 * x, -2 * x]);
        await new Promise((resolve) => setTimeout(resolve, 5)); // pacing: a steady trickle, not a second barrage
      }
    })().then(() => undefined, (err: unknown) => err);

    let sent = 0;
    await pool(cases, CONCURRENCY, async (c) => {
      if (failures.length > 25) return; // a dead host: stop rather than wait out every deadline
      const subject = subjects[c.target];
      const where = `${c.target}/${c.kind}#${sent}`;
      sent++;
      if (!c.request) {
        fuzz.publish(subject, c.data, c.headers ? { headers: c.headers } : undefined);
        return;
      }
      let m: Msg;
      try {
        m = await fuzz.request(subject, c.data, { timeout: REPLY_DEADLINE_MS, headers: c.headers });
      } catch (err) {
        return void failures.push(`${where}: no reply (${(err as Error).message})`);
      }
      check(c, m.data, where);
    });

    // What nats.js will not send: header blocks that are not headers, a status line, binary.
    const rawReplies = new Map<string, Case>();
    const rawSub = fuzz.subscribe("_FUZZRAW.>", {
      callback: (_e, m) => {
        const c = rawReplies.get(m.subject);
        if (!c) return;
        rawReplies.delete(m.subject);
        check(c, m.data, `raw ${c.target}/${c.kind} ${m.subject}`);
      },
    });
    await fuzz.flush();
    const raw = await rawClient(server.port);
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 300; i++) {
      const target = r.pick(Object.keys(subjects) as Target[]);
      const header = r.pick([
        Buffer.from("GARBAGE\r\n\r\n"), Buffer.from("NATS/1.0 503\r\n\r\n"), Buffer.from("NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: x\r\n\r\n"),
        Buffer.from("NATS/1.0\r\ntimeoutMs: -1\r\nDeadline: NaN\r\n::\r\nno colon\r\n\r\n"), Buffer.from(r.bytes(1 + r.int(60))), Buffer.alloc(0),
      ]);
      const body = r.chance(0.5) ? enc(validRequest(target, leaseSubject, r)) : r.chance(0.5) ? enc(wrongShape(target, leaseSubject, r)) : r.bytes(r.int(100));
      const reply = r.chance(0.8) ? `_FUZZRAW.${i}` : undefined;
      if (reply) rawReplies.set(reply, { target, kind: "raw headers", data: body, request: true });
      frames.push(hpub(subjects[target], reply, header, body));
    }
    raw.write(Buffer.concat(frames));
    expect(await raw.ping()).to.not.contain("-ERR");
    raw.close();

    // Over max_payload: nats.js refuses to send it; the server refuses it from a raw client
    // and drops that client. Neither reaches a host.
    for (const target of Object.keys(subjects) as Target[]) {
      expect(() => fuzz.publish(subjects[target], new Uint8Array(MAX_PAYLOAD + 1))).to.throw(/max_payload/);
      const big = await rawClient(server.port);
      big.write(Buffer.concat([Buffer.from(`PUB ${subjects[target]} _FUZZRAW.big ${MAX_PAYLOAD + 1}\r\n`), Buffer.alloc(MAX_PAYLOAD + 1), Buffer.from("\r\n")]));
      expect(await big.closed).to.contain("Maximum Payload Violation");
    }

    await until(() => rawReplies.size === 0 || failures.length > 25, REPLY_DEADLINE_MS, `replies to ${rawReplies.size} raw messages`).catch(() => {
      for (const [subject, c] of rawReplies) failures.push(`raw ${c.target} ${subject}: no reply`);
    });
    rawSub.unsubscribe();
    barrageDone = true;
    const legitError = await legit;
    const elapsedMs = Date.now() - t0;
    console.log(`      ${cases.length} + ${frames.length} raw + ${Object.keys(subjects).length} oversize messages in ${elapsedMs} ms; ${legitCalls} legitimate call pairs alongside`);
    console.log(`      replies: ${[...codes].sort().map(([k, n]) => `${k} ${n}`).join(", ")}`);
    expect(failures, failures.slice(0, 10).join("\n")).to.deep.equal([]);
    if (legitError) throw legitError;
    expect(unhandled, String(unhandled[0])).to.deep.equal([]);
    expect(legitCalls).to.be.above(0);
    // The barrage must have exercised every target's error path and its normal path.
    for (const t of Object.keys(subjects)) expect(codes.get(`${t} CODEC`), `${t} CODEC replies`).to.be.above(0);
    barrageMs = elapsedMs;
  });

  it("every host still serves normal calls afterwards", async () => {
    const handle = await services.get<FuzzTarget>("target");
    expect(await handle.echo({ a: [1, 2, 3] })).to.deep.equal({ a: [1, 2, 3] });
    expect(await handle.add(2, 3)).to.equal(5);
    const [status] = await services.status();
    expect(status!.instances).to.have.length(1);
    expect(status!.instances[0]!.stats!.running).to.equal(0);

    const ping = codec.decode<[number, { hostId: string; usedCpus: number }]>((await fuzz.request(subjects.agent, enc({ op: "ping" }), { timeout: 5_000 })).data);
    expect(ping[0]).to.equal(0);
    expect(ping[1].hostId).to.equal("fuzz-host");
    expect(ping[1].usedCpus, "no hostile spawn started a process").to.equal(0);
    const list = codec.decode<[number, unknown[]]>((await fuzz.request(subjects.agent, enc({ op: "list" }), { timeout: 5_000 })).data);
    expect(list).to.deep.equal([0, []]);
    expect(agent.processes()).to.deep.equal([]);

    const out = await infClient.submit(obs(1.5, -2));
    expect(out.action).to.deep.equal(new Float32Array([3, -4]));
    expect(infServer.isRunning).to.equal(true);
    expect(infServer.loopError).to.equal(undefined);
    for (const c of [services.connection, agentConn, infConn]) expect(c.nc!.isClosed()).to.equal(false);
  });

  it("logs the bad messages at a bounded rate, with a summary of what it held back", async () => {
    // Hosts started logging in before(); allow for that and for the check calls since.
    const windows = Math.ceil((barrageMs + 5_000) / LOG_INTERVAL_MS) + 1;
    for (const [host, log] of Object.entries(logs)) {
      expect(log.lines.length, `${host} logged something`).to.be.above(0);
      expect(log.lines.length, `${host} logged ${log.lines.length} lines`).to.be.at.most(windows * (LOG_LINES + 1));
      for (const l of log.lines) expect(JSON.stringify(l).length, `${host}: ${l.event}`).to.be.below(2_000);
    }
    // Stopping a host writes what its limiter still holds, so nothing is silently lost.
    await services.close();
    await agent.stop();
    await infServer.shutdown();
    await infTransport.close();
    for (const [host, log] of Object.entries(logs)) {
      const summaries = log.lines.filter((l) => / similar messages suppressed$/.test(l.event));
      expect(summaries.length, `${host} summaries`).to.be.above(0);
      const held = summaries.reduce((n, l) => n + (l.details!.suppressed as number), 0);
      expect(held, `${host} suppressed lines`).to.be.above(log.lines.length);
    }
    // What was reported, written or held back: each kind of bad message, and no handler bug.
    const events = (log: ReturnType<typeof capture>) =>
      new Set(log.lines.flatMap((l) => (l.details?.events ? Object.keys(l.details.events as object) : [l.event])).filter((e) => !/suppressed$/.test(e)));
    // A result over max_payload is refused by the codec before it is built (a CodecError reply,
    // counted above), so no reply is ever too big to send as is.
    expect([...events(logs.actor)].sort()).to.deep.equal([
      "call without reply subject dropped", "control request without reply subject dropped", "malformed call", "malformed control request",
    ]);
    expect([...events(logs.agent)].sort()).to.deep.equal(["agent request without reply subject dropped", "malformed agent request"]);
    expect([...events(logs.inference)].sort()).to.deep.equal(["inference request without reply subject dropped", "malformed inference request"]);
  });
});

describe("rate-limited logger", () => {
  it("passes maxLines per interval, then reports the rest as one summary line", () => {
    let now = 0;
    const lines: { event: string; details?: Record<string, unknown> }[] = [];
    const log = rateLimitedLogger({ warn: (event, details) => void lines.push({ event, details }) }, { maxLines: 3, intervalMs: 1_000, now: () => now });
    for (let i = 0; i < 10; i++) log.warn(i % 2 ? "malformed call" : "no reply subject", { i });
    expect(lines.map((l) => l.event)).to.deep.equal(["no reply subject", "malformed call", "no reply subject"]);
    now = 1_000;
    log.warn("malformed call");
    expect(lines[3]).to.deep.equal({ event: "7 similar messages suppressed", details: { suppressed: 7, events: { "malformed call": 4, "no reply subject": 3 }, intervalMs: 1_000 } });
    expect(lines[4]!.event).to.equal("malformed call");
    log.flush();
    expect(lines).to.have.length(5); // nothing held back: no summary
    for (let i = 0; i < 5; i++) log.warn("x");
    log.flush();
    expect(lines.at(-1)!.event).to.equal("3 similar messages suppressed");
  });

  it("survives a sink that throws", () => {
    const log = rateLimitedLogger({ warn: () => { throw new Error("disk full"); } });
    expect(() => log.warn("x")).to.not.throw();
    log.flush();
  });

  it("hosts refuse a logger without warn()", async () => {
    const err = await getServices({ backend: "local", namespace: uniqueNamespace(), logger: { info: () => {} } as unknown as Logger }).catch((e) => e);
    expect(err).to.be.instanceOf(InvalidOptionsError);
    expect(err.message).to.contain("logger");
    expect(() => new NatsTransport({ connection: localConnection(createLocalBus()), namespace: "n", name: "p", logger: 5 as never })).to.throw(InvalidOptionsError, /logger/);
    const agentErr = await startAgent({ namespace: "n", logger: "stderr" as never, servers: "nats://127.0.0.1:1" }).catch((e) => e);
    expect(agentErr).to.be.instanceOf(InvalidOptionsError);
  });
});
