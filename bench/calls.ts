/**
 * The call path (issue 12): a 100k-item stream of small items through an actorbus service vs a
 * hand-written nats.js stream with the same credit window; a slow consumer's effect on the host's
 * memory; and cancellation latency (abort() to the caller's rejection, and to the running
 * method's signal, on loopback).
 */
import { connect, createInbox } from "@nats-io/transport-node";
import { fileURLToPath } from "node:url";
import { CancelledError, createCodec, currentCall, getServices, startNatsServer, withOptions } from "../src/index.ts";
import { printTable, ratio, round, startChild, summarize } from "./lib.ts";

const PEER = fileURLToPath(new URL("./calls-peer.ts", import.meta.url));
const ITEMS = 100_000;
const WINDOW = 64;

async function rawStream(url: string, n: number): Promise<number> {
  const codec = createCodec();
  const nc = await connect({ servers: url, noAsyncTraces: true });
  const inbox = createInbox();
  const creditSubject = createInbox();
  let got = 0;
  let sinceCredit = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    nc.subscribe(inbox, {
      callback: (_e, m) => {
        const f = codec.decode<[number, unknown]>(m.data);
        if (f[0] === 4) return resolve();
        got++;
        if (++sinceCredit >= WINDOW / 2) {
          nc.publish(creditSubject, codec.encode([0, sinceCredit]));
          sinceCredit = 0;
        }
      },
    });
    void nc.flush().then(() => nc.publish("bench.stream", codec.encode([n, inbox, creditSubject])));
  });
  const s = (performance.now() - t0) / 1000;
  await nc.close();
  if (got !== n) throw new Error(`raw stream got ${got} of ${n}`);
  return Math.round(n / s);
}

export async function benchCalls(): Promise<Record<string, unknown>> {
  const server = await startNatsServer();
  const ns = "bench_calls";
  try {
    const raw = await startChild(PEER, ["raw", server.url]);
    const gen = await startChild(PEER, ["gen", server.url, ns]);
    const services = await getServices({ servers: server.url, namespace: ns });
    const h = await services.get<{ items(n: number): AsyncIterable<{ i: number }>; rss(): number }>("gen");
    const viaActorbus = async (n: number) => {
      const t0 = performance.now();
      let got = 0;
      for await (const _ of h.items(n)) got++;
      if (got !== n) throw new Error(`stream got ${got} of ${n}`);
      return Math.round(n / ((performance.now() - t0) / 1000));
    };
    // Interleaved rounds: both see the same machine.
    await viaActorbus(5_000);
    await rawStream(server.url, 5_000);
    const ab: number[] = [];
    const rw: number[] = [];
    for (let r = 0; r < 3; r++) {
      ab.push(await viaActorbus(ITEMS));
      rw.push(await rawStream(server.url, ITEMS));
    }
    const best = (xs: number[]) => Math.max(...xs);

    // A slow consumer: the host runs at most a window ahead, so its memory does not grow.
    const rssBefore = await h.rss();
    let consumed = 0;
    for await (const _ of h.items(1_000_000)) {
      if (++consumed % 100 === 0) await new Promise((r) => setTimeout(r, 1));
      if (consumed === 5_000) break;
    }
    const rssAfter = await h.rss();
    await gen.stop();
    await raw.stop();

    // Cancellation, on a host in this process (one clock for both ends).
    const signalled: number[] = [];
    let abortedAt = 0;
    await services.register("holder", class Holder {
      async hold() {
        const { signal } = currentCall();
        await new Promise<void>((resolve) => signal.addEventListener("abort", () => (signalled.push(performance.now() - abortedAt), resolve()), { once: true }));
      }
      ready() {
        return true;
      }
    });
    const holder = await services.get<{ hold(): Promise<void>; ready(): Promise<boolean> }>("holder");
    const toReject: number[] = [];
    for (let i = 0; i < 300; i++) {
      const ac = new AbortController();
      const p = withOptions(holder, { signal: ac.signal }).hold();
      await new Promise((r) => setTimeout(r, 2)); // let it start on the host
      abortedAt = performance.now();
      ac.abort();
      const err = await p.catch((e) => e);
      toReject.push(performance.now() - abortedAt);
      if (!(err instanceof CancelledError)) throw new Error(`expected CancelledError, got ${err}`);
      while (signalled.length <= i) await new Promise((r) => setImmediate(r));
    }
    await services.close();

    const rejectStats = summarize(toReject);
    const signalStats = summarize(signalled);
    const figures = {
      streaming: {
        items: ITEMS,
        actorbusItemsPerSec: best(ab),
        rawNatsItemsPerSec: best(rw),
        rounds: { actorbus: ab, raw: rw },
        ratio: ratio(best(ab), best(rw)),
        target: ">= 0.8x a hand-written nats.js stream with the same credit window",
        slowConsumer: { consumed, hostRssBeforeMiB: round(rssBefore / 2 ** 20, 1), hostRssAfterMiB: round(rssAfter / 2 ** 20, 1) },
      },
      cancellation: {
        abortToRejectionMs: rejectStats,
        abortToMethodSignalMs: signalStats,
        target: "p99 abort->rejection <= 5 ms, abort->signal <= 10 ms",
      },
    };
    printTable("calls: streams and cancellation", [
      [`stream of ${ITEMS} small items, actorbus items/s`, `${figures.streaming.actorbusItemsPerSec}  (rounds ${ab.join(", ")})`],
      [`hand-written nats.js stream, window ${WINDOW}, items/s`, `${figures.streaming.rawNatsItemsPerSec}  (rounds ${rw.join(", ")})`],
      ["ratio (>= 0.8)", figures.streaming.ratio],
      ["slow consumer: host RSS before / after 5000 items", `${figures.streaming.slowConsumer.hostRssBeforeMiB} / ${figures.streaming.slowConsumer.hostRssAfterMiB} MiB`],
      ["abort() -> caller's CancelledError p50 / p99 ms (<= 5)", `${round(rejectStats.p50Ms, 3)} / ${round(rejectStats.p99Ms, 3)}`],
      ["abort() -> running method's signal p50 / p99 ms (<= 10)", `${round(signalStats.p50Ms, 3)} / ${round(signalStats.p99Ms, 3)}`],
    ]);
    return figures;
  } finally {
    await server.stop();
  }
}
