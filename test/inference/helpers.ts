import { connectBus, type BusConnection } from "../../src/connection/index.ts";
import { InProcessTransport, NatsTransport, type InferenceTransport, type TensorBatch } from "../../src/inference/index.ts";
import { uniqueNamespace } from "../helpers/nats.ts";

/** A promise the test opens by hand: lets a model call block until the test has queued more work. */
export function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

/** The policy of the tests: action = 2 * observation, element-wise, one batch at a time. */
export function doubling(batch: TensorBatch): { batchSize: number; data: { action: Float32Array }; shapes: { action: number[] } } {
  const obs = batch.data.observation as Float32Array;
  const action = new Float32Array(obs.length);
  for (let i = 0; i < obs.length; i++) action[i] = obs[i]! * 2;
  return { batchSize: batch.batchSize, data: { action }, shapes: { action: batch.shapes.observation! } };
}

export interface TransportKit {
  kind: "in-process" | "nats";
  /** A server-side transport; in process, every call returns the one shared queue. */
  server<I = any, O = any>(opts?: { maxBuffered?: number }): InferenceTransport<I, O> & { buffered: number };
  /** A client-side transport talking to the last `server()` (same object in process). */
  client<I = any, O = any>(): InferenceTransport<I, O>;
  /** Resolves once the NATS server has the servers' subscriptions (their own connection's flush). */
  serversSubscribed(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The same tests run over both transports. NATS kits use separate connections for servers and
 * clients (as separate processes would) on the shared test server, each kit its own namespace.
 */
export async function inProcessKit(): Promise<TransportKit> {
  let shared: InProcessTransport | undefined;
  return {
    kind: "in-process",
    server: (opts) => (shared ??= new InProcessTransport(opts)) as any,
    client: () => (shared ??= new InProcessTransport()) as any,
    serversSubscribed: async () => {},
    close: async () => {},
  };
}

export async function natsKit(url: string): Promise<TransportKit> {
  const serverConn: BusConnection = await connectBus({ servers: url });
  const clientConn: BusConnection = await connectBus({ servers: url });
  const namespace = uniqueNamespace("inf");
  const made: NatsTransport[] = [];
  const make = (connection: BusConnection, o: object) => {
    const t = new NatsTransport({ connection, namespace, name: "policy", ...o });
    made.push(t);
    return t;
  };
  return {
    kind: "nats",
    server: (opts) => make(serverConn, opts ?? {}) as any,
    client: () => make(clientConn, {}) as any,
    serversSubscribed: () => serverConn.transport.flush(),
    async close() {
      await Promise.all(made.map((t) => t.close()));
      await Promise.all([serverConn.close(), clientConn.close()]);
    },
  };
}

export function obs(...values: number[]): { observation: Float32Array } {
  return { observation: new Float32Array(values) };
}
