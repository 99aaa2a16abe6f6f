import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import { encode } from "@msgpack/msgpack";

/** mulberry32: a seeded generator, so a failing fuzz run can be replayed from its printed seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface HostilePayload {
  kind: "random" | "truncated" | "misshapen" | "headers" | "empty";
  data: Uint8Array;
  headers?: MsgHdrs;
}

const SHAPES: unknown[] = [
  42,
  "incr",
  null,
  [],
  ["incr"],
  ["incr", "not-an-array", 1000],
  ["incr", [], -1],
  ["incr", [], Number.NaN],
  [123, [], 1000],
  ["__proto__", [], 1000],
  ["constructor", [], 1000],
  ["incr", [], 1e300],
  { op: 42 },
  { op: "spawn", procs: "nope", startTimeoutMs: -5 },
  { op: "stop", procIds: [null, 1, {}], graceMs: "x" },
  { id: "x".repeat(10_000), inputs: [[[[[[[[]]]]]]]] },
  Array.from({ length: 60 }).reduce<unknown[]>((inner) => [inner], []),
];

/** Random garbage, truncated or mis-shaped versions of `valid`, and nonsense headers. */
export function hostilePayload(rand: () => number, valid: Uint8Array): HostilePayload {
  const pick = rand();
  const bytes = (n: number) => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
    return b;
  };
  if (pick < 0.05) return { kind: "empty", data: new Uint8Array(0) };
  if (pick < 0.35) return { kind: "random", data: bytes(1 + Math.floor(rand() * 512)) };
  if (pick < 0.6) return { kind: "truncated", data: valid.subarray(0, Math.floor(rand() * valid.length)) };
  if (pick < 0.85) return { kind: "misshapen", data: encode(SHAPES[Math.floor(rand() * SHAPES.length)]) };
  const h = natsHeaders();
  h.set(`X-${Math.floor(rand() * 1e6)}`, String.fromCharCode(...bytes(8).map((c) => 33 + (c % 90))));
  for (const k of ["Nats-Msg-Id", "Nats-Expected-Stream", "ab-deadline", "Status"]) if (rand() < 0.5) h.set(k, String(Math.floor(rand() * 1e9) - 5e8));
  return { kind: "headers", data: rand() < 0.5 ? valid : bytes(64), headers: h };
}
