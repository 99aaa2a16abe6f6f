/**
 * Moving a connection off a server that entered lame-duck mode, losing nothing.
 *
 * What nats-server does (`nats-server --signal ldm=<pid>`, measured on 2.9.10): it stops taking
 * connections at once, tells every client with an INFO carrying `ldm` (nats.js: a status event of
 * type "ldm"), waits `lame_duck_grace_period` (default 10 s), then closes its clients one after
 * another over `lame_duck_duration` (default 2 min, 30 s at least), and exits. A client it
 * closes reconnects elsewhere on its own, but what was in flight at that moment is lost: requests
 * on their way to this client's subscriptions vanish (their callers wait for their deadlines),
 * and the replies to this client's own requests find no subscription (its callers got
 * ConnectionLostError). Under load that was every call in flight (issue 16, item 6).
 *
 * So within the grace period the connection moves itself, make-before-break:
 * 1. A bridge connection to another server of the cluster subscribes everything this connection
 *    serves (same subjects, same queue groups), and the move waits until the server we are
 *    leaving sees that interest (a probe request through it gets an answer). Every subscription
 *    here has a queue group (a private one when its owner gave none, see privateQueue), so while
 *    both copies exist each message still reaches only one of them.
 * 2. The old subscriptions are drained: every message the old server sent them is handled.
 *    From here on messages reach this process through the bridge.
 * 3. New requests of this connection go through the bridge (or, without one, are held), and
 *    those in flight get their replies.
 * 4. The connection reconnects (to another server: the one leaving refuses connections), takes
 *    its subscriptions back, requests go through it again (the held ones leave), and the bridge
 *    closes once the requests sent through it have their replies.
 * While the bridge is open, a reply leaves through the connection its call came in through:
 * respond() of a message the bridge delivered publishes on the bridge, and transport.publish (the
 * actor host's replies to batched calls, and its combined replies) picks the connection that
 * last delivered a request of that caller (its reply prefix). Only the server that delivered a
 * request is sure to know its caller's reply subject (the request was routed there after that
 * interest); another one learns of it over the cluster route on its own time, and drops a reply
 * that arrives first. Sent on the main connection, still on the leaving server, the reply to a
 * call the bridge's server delivered was lost so whenever its caller had just made that reply
 * subject there (a new inbox, or a caller that had just moved there): 1 call in 120,000 of the
 * lame-duck drill, under load.
 * Replies of calls that run through the move go out whenever they are ready. nats.js 3.4 drops
 * what is published while it is disconnected (each dial resets its outbound buffer), so from the
 * last flush before the reconnect until the reconnect, everything this connection publishes
 * (replies included: Msg.respond goes straight to the protocol handler) is parked here and sent,
 * in order, once connected again. Calls are never re-sent here: a request that could not get its
 * reply within MOVE_BOUND_MS (a very long call) still fails with ConnectionLostError when the
 * connection moves without it. Several wrappers of one nats.js connection move together: it
 * reconnects once, when each of them has let its requests in flight finish.
 */
import type { Msg, NatsConnection, Subscription as NatsSubscription, ConnectionOptions as NatsOptions } from "@nats-io/transport-node";
import { nuid } from "@nats-io/transport-node";
import { privateQueue, replyPrefixOf } from "../subjects/index.ts";
import { connectNats } from "./nats-connect.ts";
import { bridgeRequests } from "./bridge-requests.ts";
import { createRequestHold } from "./held-requests.ts";
import { park, sharedOf, unpark, type Shared } from "./parked-publishes.ts";
import { deliverGuarded, type Inbound, type RequestOptions, type SubscribeOptions, type Subscription } from "./transport.ts";

/**
 * Longest a move may take (holding requests included): well within nats-server's default grace
 * period of 10 s, after which the server starts closing its clients itself.
 */
export const MOVE_BOUND_MS = 5_000;
/** How long to wait for a server to see a subscription made on another one. */
const INTEREST_BOUND_MS = 1_000;

export interface MovableConnection {
  /** transport.subscribe: a subscription that follows the connection when it moves. */
  subscribe(subject: string, handler: (msg: Inbound) => void, opts?: SubscribeOptions): Subscription & { drain(): Promise<void> };
  /**
   * transport.publish: during a move, a reply leaves through the server its caller's last
   * request came in through (the bridge's or the leaving one), where that caller's interest is
   * known for certain.
   */
  publish(subject: string, data: Uint8Array): void;
  /** transport.request: held while a move waits for the replies of requests in flight. */
  request(subject: string, data: Uint8Array, timeoutMs: number, options?: RequestOptions): Promise<Uint8Array>;
  /** nats.js status events of the connection ("ldm" starts a move, "reconnect" ends its wait). */
  status(s: { type: string; server?: string }): void;
  /** Moves done (for tests and logs). */
  readonly moves: number;
  /** A move in progress, if any (resolves when it is over, moved or not). */
  readonly moving: Promise<void> | undefined;
  close(): void;
}

export interface MovableParams {
  nc: NatsConnection;
  /** The connection's request mux. */
  send(subject: string, data: Uint8Array, timeoutMs: number, options?: RequestOptions): Promise<Uint8Array>;
  /** Requests awaiting their replies. */
  inFlight(): number;
  /** A reply subject of this connection (for the interest probes). */
  newInbox(): string;
  /** Where a move that could not be completed is reported. */
  warn(msg: string, fields: Record<string, unknown>): void;
}

/** One subscription as its owner sees it; the NATS subscriptions under it change when it moves. */
interface Movable {
  subject: string;
  queue: string;
  handler: (msg: Inbound) => void;
  onError: SubscribeOptions["onError"];
  main: NatsSubscription | undefined;
  bridge: NatsSubscription | undefined;
  closed: boolean;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export function createMovableConnection(p: MovableParams): MovableConnection {
  const { nc } = p;
  const shared = sharedOf(nc);
  shared.wrappers++;
  const subs = new Set<Movable>();
  const held = createRequestHold(p.send);
  let moving: Promise<void> | undefined;
  let moves = 0;
  let closed = false;
  let bridge: NatsConnection | undefined;
  // While a move has a bridge: through which connection each caller (reply prefix) last reached
  // this process. Its replies leave through that one (see answerVia).
  let cameVia: Map<string, NatsConnection> | undefined;

  const deliver = (m: Movable, msg: Inbound) => deliverGuarded(m.handler, msg, m.onError);

  const listen = (on: NatsConnection, m: Movable, viaBridge: boolean): NatsSubscription =>
    on.subscribe(m.subject, {
      queue: m.queue,
      callback: viaBridge
        ? (err: Error | null, msg: Msg) => {
            if (err) return;
            if (msg.reply) cameVia?.set(replyPrefixOf(msg.reply), on);
            deliver(m, bridged(msg, on));
          }
        : (err: Error | null, msg: Msg) => {
            if (err) return;
            if (cameVia && msg.reply) cameVia.set(replyPrefixOf(msg.reply), on);
            deliver(m, msg as Inbound);
          },
    });

  /**
   * Sends a reply through `via` (the connection its call came in through) while that one can
   * publish, else through the main connection. The server that delivered a request knows its
   * caller's reply subject: the request itself was routed there after the interest. Another
   * server of the cluster may not know it yet (route interest travels on its own), and drops
   * a reply it has no interest for: a reply to a call that came through the bridge, sent on
   * the main connection still on the leaving server, to a reply subject made moments before
   * on the bridge's server (a caller's new inbox, or one that just moved there), was lost so.
   */
  const answerVia = (via: NatsConnection | undefined, subject: string, data: Uint8Array): void => {
    if (via && via !== nc && !via.isClosed()) {
      try {
        via.publish(subject, data);
        return;
      } catch {
        // the bridge is closing (its subscriptions drained): the main connection takes it
      }
    }
    nc.publish(subject, data);
  };

  // A message that came through the bridge is answered through the bridge while it is open,
  // on the main connection once it has closed (the move may end before the call does).
  const bridged = (msg: Msg, on: NatsConnection): Inbound => ({
    subject: msg.subject,
    data: msg.data,
    reply: msg.reply,
    get headers() {
      return msg.headers;
    },
    respond(data: Uint8Array) {
      if (!msg.reply || nc.isClosed()) return false;
      answerVia(on, msg.reply, data);
      return true;
    },
  });

  /** Resolves once a request through `from` reaches a subscription made on `to` (the interest has spread). */
  const interestSeen = async (from: NatsConnection, to: NatsConnection, end: number): Promise<boolean> => {
    const probe = p.newInbox();
    const sub = to.subscribe(probe, { callback: (_e, m) => void m.respond(new Uint8Array(0)) });
    try {
      await to.flush();
      while (Date.now() < end) {
        try {
          await from.request(probe, new Uint8Array(0), { timeout: 200 });
          return true;
        } catch {
          await sleep(5); // no responders yet: the subscription has not reached that server
        }
      }
      return false;
    } finally {
      sub.unsubscribe();
    }
  };

  const reconnectWaiters = new Set<() => void>();
  const waitReconnect = (end: number) =>
    new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        reconnectWaiters.delete(onReconnect);
        resolve(ok);
      };
      const onReconnect = () => done(true);
      const timer = setTimeout(() => done(false), Math.max(0, end - Date.now()));
      reconnectWaiters.add(onReconnect);
    });

  /**
   * Parks publishing, reconnects and unparks: once for all the wrappers of the connection, when
   * the last has arrived here (or at `end`).
   */
  const reconnectTogether = (end: number): Promise<boolean> => {
    let mv = shared.move;
    if (!mv) {
      let go!: () => void;
      const ready = new Promise<void>((r) => (go = r));
      const made: NonNullable<Shared["move"]> = { expected: shared.wrappers, arrived: 0, go, reconnected: Promise.resolve(false) };
      made.reconnected = (async () => {
        await Promise.race([ready, sleep(Math.max(0, end - Date.now()))]);
        park(nc, shared);
        try {
          await nc.flush().catch(() => {});
          const reconnected = waitReconnect(end + MOVE_BOUND_MS);
          await nc.reconnect().catch(() => {});
          return await reconnected;
        } finally {
          unpark(shared);
          shared.move = undefined;
        }
      })();
      shared.move = mv = made;
    }
    if (++mv.arrived >= mv.expected) mv.go();
    return mv.reconnected;
  };

  /** The cluster's servers other than the one leaving, as nats.js knows them. */
  const otherServers = (leaving: string): string[] => {
    const strip = (u: string) => u.replace(/^[a-z]+:\/\//i, "");
    const known = [...(nc.info?.connect_urls ?? []), ...toList((nc as unknown as { options?: NatsOptions }).options?.servers)];
    return [...new Set(known.map(strip))].filter((hp) => hp !== strip(leaving));
  };

  const move = async (leaving: string) => {
    const end = Date.now() + MOVE_BOUND_MS;
    const targets = otherServers(leaving);
    if (targets.length === 0) {
      p.warn("server entered lame-duck mode and no other server is known: the connection moves when the server closes it", { server: leaving });
      return;
    }
    const base = (nc as unknown as { options?: NatsOptions }).options ?? {};
    try {
      bridge = await connectNats({ ...base, servers: targets, reconnect: false, name: `${base.name ?? "actorbus"} (lame-duck move)`, timeout: 2_000 });
    } catch (err) {
      p.warn("lame-duck move: no other server took a bridge connection; moving without one", { server: leaving, reason: String((err as Error)?.message ?? err) });
    }
    const b = bridge;
    if (b) cameVia = new Map();
    // 1. Make: everything served here is served through the bridge too.
    if (b) {
      for (const m of subs) m.bridge = listen(b, m, true);
      if (!(await interestSeen(nc, b, Math.min(end, Date.now() + INTEREST_BOUND_MS)))) {
        p.warn("lame-duck move: the leaving server did not see the bridge's subscriptions in time", { server: leaving });
      }
    }
    // 2. Break: the old subscriptions go. Drained, not unsubscribed: nats.js drops what arrives
    //    for a subscription it has forgotten, and the old server may have sent more before it saw
    //    the UNSUB (measured: about one message per lane of calls in flight, without this).
    await Promise.all(
      [...subs].map((m) => {
        const old = m.main;
        m.main = undefined;
        return old?.drain().catch(() => {});
      }),
    );
    await nc.flush().catch(() => {});
    // 3. New requests go through the bridge (held without one); those in flight get their replies here.
    const viaBridge = b ? bridgeRequests(b) : undefined;
    if (viaBridge) held.divert(viaBridge.request);
    else held.hold();
    while (p.inFlight() > 0 && Date.now() < end) await sleep(2);
    // 4. Move (publishing parked from the last flush on), take the subscriptions back, let the
    //    parked messages and the held requests go.
    const ok = await reconnectTogether(end);
    if (!ok) p.warn("lame-duck move: no reconnect in time; the connection keeps trying", { server: leaving });
    for (const m of subs) if (!m.closed && !m.main) m.main = listen(nc, m, false);
    await nc.flush().catch(() => {});
    held.release();
    if (b && !b.isClosed()) {
      if (!(await interestSeen(b, nc, Date.now() + INTEREST_BOUND_MS))) {
        p.warn("lame-duck move: the new server's subscriptions were not seen in time", { server: leaving });
      }
      // Drained too, for the same reason; its connection closes once they are, and the requests
      // sent through it have their replies.
      for (const m of subs) m.bridge = undefined;
      while (viaBridge!.inFlight > 0 && Date.now() < end + MOVE_BOUND_MS) await sleep(2);
      await b.drain().catch(() => {});
    }
    cameVia = undefined;
    bridge = undefined;
    moves++;
  };

  return {
    subscribe(subject, handler, opts) {
      const m: Movable = { subject, queue: opts?.queue ?? privateQueue(nuid.next()), handler, onError: opts?.onError, main: undefined, bridge: undefined, closed: false };
      m.main = listen(nc, m, false);
      if (bridge && !bridge.isClosed()) m.bridge = listen(bridge, m, true);
      subs.add(m);
      const unsubscribe = () => {
        if (m.closed) return;
        m.closed = true;
        subs.delete(m);
        m.main?.unsubscribe();
        m.bridge?.unsubscribe();
      };
      return {
        unsubscribe,
        // Messages the server already sent are still handled (nats.js drain), then it is gone.
        async drain() {
          if (m.closed) return;
          m.closed = true;
          subs.delete(m);
          m.bridge?.unsubscribe();
          await m.main?.drain().catch(() => {});
        },
      };
    },
    publish(subject, data) {
      // Replies of batched calls and combined replies come this way (the actor host's publish):
      // they go where their caller's requests came in, as bridged respond() does.
      if (cameVia) answerVia(cameVia.get(replyPrefixOf(subject)), subject, data);
      else nc.publish(subject, data);
    },
    request(subject, data, timeoutMs, options) {
      return held.request(subject, data, timeoutMs, options);
    },
    status(st) {
      if (st.type === "reconnect") for (const w of [...reconnectWaiters]) w();
      if (st.type !== "ldm") return;
      const server = st.server ?? nc.getServer();
      if (moving || closed) return;
      moving = move(server)
        .catch((err: unknown) => p.warn("lame-duck move failed", { server, reason: String((err as Error)?.message ?? err) }))
        .finally(() => {
          held.release();
          cameVia = undefined;
          moving = undefined;
        });
    },
    get moves() {
      return moves;
    },
    get moving() {
      return moving;
    },
    close() {
      if (closed) return;
      closed = true;
      shared.wrappers--;
      held.release();
      void bridge?.close().catch(() => {});
      bridge = undefined;
      cameVia = undefined;
    },
  };
}

function toList(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}
