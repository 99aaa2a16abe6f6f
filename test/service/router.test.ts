import { expect } from "chai";
import { ActorBusError, errorFromWire, errorToWire, InvalidOptionsError } from "../../src/errors/index.ts";
import {
  ANY_CALL,
  createRouter,
  resolveServiceOptions,
  RouterError,
  ROUTERS,
  SESSION_CALL,
  type ReplicaView,
  type RouteRequest,
  type RouterFunction,
} from "../../src/service/index.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { seededRandom } from "../helpers/hostile-payloads.ts";

// What the controller hands a router: its own replica records (here reduced to what routers read).
interface Rep {
  index: number;
  outstanding: number;
  sessions: number;
  healthy: boolean;
}
const reps = (...outstanding: number[]): Rep[] => outstanding.map((o, index) => ({ index, outstanding: o, sessions: 0, healthy: true }));
const usable = (r: Rep) => r.healthy;
const call = (method: string, args: unknown[] = [], metadata: Record<string, string> = {}, session = false): RouteRequest => ({ method, args, metadata, session });
const picks = (n: number, pick: () => Rep | undefined) => Array.from({ length: n }, () => pick()?.index);

/** The controller's least-loaded selection before routers existed, kept here as the reference. */
function referenceLeastLoaded() {
  let rr = 0;
  return (replicas: Rep[], capacity: number, bySessions: boolean): Rep | undefined => {
    const n = replicas.length;
    const start = rr++ % n;
    let best: Rep | undefined;
    for (let i = 0; i < n; i++) {
      const r = replicas[(start + i) % n]!;
      if (!r.healthy || r.outstanding >= capacity) continue;
      if (!best || r.outstanding < best.outstanding || (bySessions && r.outstanding === best.outstanding && r.sessions < best.sessions)) best = r;
    }
    return best;
  };
}

/** Rendezvous (highest random weight) hashing: sticky per key, and only keys of a vanished replica move. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b); // a final mix, so weights of nearby keys are unrelated
  return (h ^ (h >>> 13)) >>> 0;
}
const prefixAffinity: RouterFunction = (candidates, { args }) => {
  if (typeof args[0] !== "string") return undefined;
  const prefix = args[0].slice(0, 16);
  let best: ReplicaView | undefined;
  let bestW = -1;
  for (const c of candidates) {
    const w = fnv1a(`${prefix}#${c.index}`);
    if (w > bestW) [best, bestW] = [c, w];
  }
  return best;
};

describe("service routers (pure, no NATS)", () => {
  describe("round-robin", () => {
    it("cycles through the replicas exactly", () => {
      const r = createRouter<Rep>("round-robin", { capacity: 4, usable });
      const rs = reps(0, 3, 1);
      expect(picks(9, () => r.pick(rs, ANY_CALL))).to.deep.equal([0, 1, 2, 0, 1, 2, 0, 1, 2]);
      const counts = [0, 0, 0];
      for (let i = 0; i < 3000; i++) counts[r.pick(rs, ANY_CALL)!.index]!++;
      expect(counts).to.deep.equal([1000, 1000, 1000]);
    });

    it("skips full and unusable replicas and continues after the one it picked", () => {
      const r = createRouter<Rep>("round-robin", { capacity: 2, usable });
      const rs = reps(0, 2, 0, 1);
      rs[3]!.healthy = false;
      expect(picks(6, () => r.pick(rs, ANY_CALL))).to.deep.equal([0, 2, 0, 2, 0, 2]);
      rs[1]!.outstanding = 1; // room again
      expect(picks(3, () => r.pick(rs, ANY_CALL))).to.deep.equal([0, 1, 2]);
    });

    it("keeps its cursor per router, not per module", () => {
      const a = createRouter<Rep>("round-robin");
      const b = createRouter<Rep>("round-robin");
      const rs = reps(0, 0, 0);
      a.pick(rs, ANY_CALL);
      a.pick(rs, ANY_CALL);
      expect(b.pick(rs, ANY_CALL)!.index).to.equal(0);
      expect(a.pick(rs, ANY_CALL)!.index).to.equal(2);
    });
  });

  describe("random", () => {
    it("chooses every replica with room, about evenly, and repeatably with a seed", () => {
      const rs = reps(0, 1, 5, 2, 0);
      const r = createRouter<Rep>("random", { capacity: 5, usable, random: seededRandom(42) });
      const counts = [0, 0, 0, 0, 0];
      for (let i = 0; i < 4000; i++) counts[r.pick(rs, ANY_CALL)!.index]!++;
      expect(counts[2]).to.equal(0); // full
      for (const i of [0, 1, 3, 4]) expect(counts[i]).to.be.within(850, 1150);

      const again = createRouter<Rep>("random", { capacity: 5, usable, random: seededRandom(42) });
      const other = createRouter<Rep>("random", { capacity: 5, usable, random: seededRandom(42) });
      const seq = picks(50, () => again.pick(rs, ANY_CALL));
      expect(picks(50, () => other.pick(rs, ANY_CALL))).to.deep.equal(seq);
      expect(new Set(seq).size).to.be.greaterThan(1);
    });

    it("tolerates a generator returning 1 or a negative number", () => {
      const rs = reps(0, 0, 0);
      expect(createRouter<Rep>("random", { random: () => 1 }).pick(rs, ANY_CALL)!.index).to.equal(2);
      expect(createRouter<Rep>("random", { random: () => -0.5 }).pick(rs, ANY_CALL)!.index).to.equal(0);
    });
  });

  describe("least-loaded (the default)", () => {
    it("prefers fewer outstanding calls", () => {
      const r = createRouter<Rep>("least-loaded", { capacity: 10, usable });
      const rs = reps(3, 1, 2, 1);
      rs[3]!.healthy = false;
      expect(picks(5, () => r.pick(rs, ANY_CALL))).to.deep.equal([1, 1, 1, 1, 1]);
    });

    it("rotates among ties", () => {
      const r = createRouter<Rep>("least-loaded", { capacity: 10, usable });
      expect(picks(6, () => r.pick(reps(0, 0, 0), ANY_CALL))).to.deep.equal([0, 1, 2, 0, 1, 2]);
      const r2 = createRouter<Rep>("least-loaded", { capacity: 10, usable });
      const rs = reps(1, 0, 2, 0);
      expect(new Set(picks(8, () => r2.pick(rs, ANY_CALL)))).to.deep.equal(new Set([1, 3]));
    });

    it("breaks ties by fewer sessions when binding a session, and only then", () => {
      const r = createRouter<Rep>("least-loaded", { capacity: 10, usable });
      const rs = reps(1, 1, 1, 2);
      [2, 0, 1, 0].forEach((s, i) => (rs[i]!.sessions = s));
      expect(picks(6, () => r.pick(rs, SESSION_CALL))).to.deep.equal([1, 1, 1, 1, 1, 1]);
      expect(new Set(picks(6, () => r.pick(rs, ANY_CALL)))).to.deep.equal(new Set([0, 1, 2]));
      // Fewer outstanding still wins over fewer sessions.
      rs[0]!.outstanding = 0;
      expect(r.pick(rs, SESSION_CALL)!.index).to.equal(0);
    });

    it("picks exactly what the controller picked before routers, pick after pick", () => {
      const rand = seededRandom(7);
      const ref = referenceLeastLoaded();
      const capacity = 3;
      const r = createRouter<Rep>("least-loaded", { capacity, usable });
      const rs = reps(0, 0, 0, 0, 0);
      for (let i = 0; i < 5000; i++) {
        for (const x of rs) {
          x.outstanding = Math.floor(rand() * 4);
          x.sessions = Math.floor(rand() * 3);
          x.healthy = rand() > 0.15;
        }
        const bySessions = rand() < 0.3;
        expect(r.pick(rs, bySessions ? SESSION_CALL : ANY_CALL)?.index).to.equal(ref(rs, capacity, bySessions)?.index, `pick ${i}`);
      }
    });
  });

  describe("every strategy", () => {
    const all = [...ROUTERS, "custom"] as const;
    const make = (name: (typeof all)[number]) =>
      createRouter<Rep>(name === "custom" ? (cs) => cs[cs.length - 1] : name, { capacity: 2, usable, random: seededRandom(1) });

    it("never picks a full or unusable replica, and gives undefined when none has room", () => {
      const rand = seededRandom(3);
      for (const name of all) {
        const r = make(name);
        const rs = reps(0, 0, 0, 0);
        for (let i = 0; i < 2000; i++) {
          for (const x of rs) {
            x.outstanding = Math.floor(rand() * 3);
            x.healthy = rand() > 0.2;
          }
          const p = r.pick(rs, call("m"));
          const open = rs.filter((x) => x.healthy && x.outstanding < 2);
          if (open.length === 0) expect(p, name).to.equal(undefined);
          else expect(open, name).to.include(p);
        }
        expect(r.pick([], call("m")), name).to.equal(undefined);
        expect(r.pick(reps(2, 5), call("m")), name).to.equal(undefined);
      }
    });
  });

  describe("a function", () => {
    it("gets the call (method, args, metadata, session) and frozen views of the replicas with room only", () => {
      const seen: { candidates: readonly ReplicaView[]; call: RouteRequest }[] = [];
      const r = createRouter<Rep>(
        (candidates, c) => {
          seen.push({ candidates, call: c });
          return candidates[0];
        },
        { capacity: 4, usable },
      );
      const rs = reps(1, 4, 2, 0);
      rs[3]!.healthy = false;
      rs[2]!.sessions = 3;
      const req = call("generate", ["hello", 3], { tenant: "a" }, true);
      expect(r.pick(rs, req)).to.equal(rs[0]);
      expect(r.readsCall).to.equal(true);
      expect(r.name).to.equal("custom");
      const { candidates, call: got } = seen[0]!;
      expect(got).to.equal(req);
      expect(got).to.deep.include({ method: "generate", args: ["hello", 3], metadata: { tenant: "a" }, session: true });
      expect(candidates).to.deep.equal([
        { index: 0, outstanding: 1, capacity: 4, room: 3, sessions: 0 },
        { index: 2, outstanding: 2, capacity: 4, room: 2, sessions: 3 },
      ]);
      expect(Object.isFrozen(candidates) && candidates.every((c) => Object.isFrozen(c))).to.equal(true);
      // A view is a snapshot: it is not the controller's record and does not change under the router.
      expect(candidates[0]).to.not.equal(rs[0]);
      rs[0]!.outstanding = 3;
      expect(candidates[0]!.outstanding).to.equal(1);
    });

    it("maps the chosen view back to the replica, and is not called when no replica has room", () => {
      let calls = 0;
      const r = createRouter<Rep>(
        (cs) => {
          calls++;
          return cs.find((c) => c.index === 2);
        },
        { capacity: 2, usable },
      );
      const rs = reps(0, 1, 1);
      expect(r.pick(rs, call("m"))).to.equal(rs[2]);
      expect(r.pick(reps(2, 2), call("m"))).to.equal(undefined);
      expect(r.pick([], call("m"))).to.equal(undefined);
      expect(calls).to.equal(1);
    });

    it("returning undefined (or null) lets least-loaded choose among the same candidates", () => {
      const r = createRouter<Rep>((_cs, c) => (c.method === "null" ? (null as never) : undefined), { capacity: 3, usable });
      const rs = reps(2, 1, 3, 1);
      expect(picks(4, () => r.pick(rs, call("m")))).to.deep.equal([1, 1, 3, 3]); // least-loaded's rotating start
      expect(r.pick(rs, call("null"))!.index).to.be.oneOf([1, 3]);
    });

    it("a prefix-hashing router is sticky per prompt prefix, whatever the load, and spreads prefixes", () => {
      const r = createRouter<Rep>(prefixAffinity, { capacity: 100, usable });
      const rs = reps(0, 0, 0, 0);
      const rand = seededRandom(11);
      const prefixes = Array.from({ length: 40 }, (_, i) => `[${String(i).padStart(3, "0")}] You are a helpful assistant. `);
      const home = new Map<string, number>();
      for (let round = 0; round < 20; round++) {
        for (const x of rs) x.outstanding = Math.floor(rand() * 50);
        for (const p of prefixes) {
          const got = r.pick(rs, call("generate", [`${p}question ${round}`]))!.index;
          if (!home.has(p)) home.set(p, got);
          expect(got, p).to.equal(home.get(p));
        }
      }
      expect(new Set(home.values()).size).to.equal(4);
      // When a replica fills up only its own prefixes move; the others stay where their cache is.
      rs[0]!.outstanding = 100;
      for (const p of prefixes) {
        const got = r.pick(rs, call("generate", [`${p}again`]))!.index;
        if (home.get(p) !== 0) expect(got, p).to.equal(home.get(p));
        else expect(got, p).to.not.equal(0);
      }
      // Calls it does not understand go least-loaded.
      expect(r.pick(reps(3, 1, 2), call("stats", [42]))!.index).to.equal(1);
    });

    it("a throw becomes a RouterError (code ROUTER, not retryable) naming the fix, with the cause", () => {
      const boom = new TypeError("prompt.slice is not a function");
      const r = createRouter<Rep>(() => {
        throw boom;
      });
      let err: unknown;
      try {
        r.pick(reps(0, 0), call("generate", [1]));
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(RouterError).and.instanceOf(ActorBusError);
      const e = err as RouterError;
      expect(e.code).to.equal("ROUTER");
      expect(e.retryable).to.equal(false);
      expect(e.cause).to.equal(boom);
      expect(e.message).to.match(/router function threw while routing generate/).and.match(/TypeError: prompt\.slice/).and.match(/fix the router/);
      // It crosses the wire as itself.
      const back = errorFromWire(errorToWire(e));
      expect(back).to.be.instanceOf(RouterError);
      expect((back as RouterError).code).to.equal("ROUTER");
    });

    it("a choice that is not one of its candidates is a RouterError, never a full or unoffered replica", () => {
      const rs = reps(0, 2, 0);
      const cases: [RouterFunction, RegExp][] = [
        [(cs) => ({ ...cs[0]! }), /an object with index 0 .*not one of the candidates.*candidates\.find/],
        [() => ({ index: 1, outstanding: 2, capacity: 2, room: 0, sessions: 0 }), /index 1 .*not one of the candidates/],
        [() => 2 as never, /the number 2 .*return the view/],
        [() => "0" as never, /a string, which is not one of the candidates/],
      ];
      for (const [fn, message] of cases) {
        expect(() => createRouter<Rep>(fn, { capacity: 2 }).pick(rs, call("m"))).to.throw(RouterError, message);
      }
      // A view kept from an earlier call is stale (its load has changed): refused too.
      let kept: ReplicaView | undefined;
      const sticky = createRouter<Rep>((cs) => (kept ??= cs[0]), { capacity: 2 });
      expect(sticky.pick(rs, call("m"))).to.equal(rs[0]);
      expect(() => sticky.pick(rs, call("m"))).to.throw(RouterError, /another call/);
    });

    it("an async function is refused: routers must be synchronous", async () => {
      const r = createRouter<Rep>((async (cs: readonly ReplicaView[]) => cs[0]) as never);
      expect(() => r.pick(reps(0), call("m"))).to.throw(RouterError, /returned a Promise.*must be synchronous/);
      const rejecting = createRouter<Rep>((async () => {
        throw new Error("late");
      }) as never);
      expect(() => rejecting.pick(reps(0), call("m"))).to.throw(RouterError, /Promise/);
      await new Promise((r) => setImmediate(r)); // its rejection is handled (mocha would report it otherwise)
    });
  });

  describe("the router option", () => {
    it("defaults to least-loaded and accepts the names and a function", () => {
      expect(resolveServiceOptions({}).router).to.equal("least-loaded");
      for (const name of ROUTERS) expect(resolveServiceOptions({ router: name }).router).to.equal(name);
      const fn: RouterFunction = (cs) => cs[0];
      expect(resolveServiceOptions({ router: fn }).router).to.equal(fn);
      expect((Counter.options({ router: "round-robin", numReplicas: 2 }) as unknown as { router: string }).router).to.equal("round-robin");
      expect(createRouter("least-loaded").readsCall).to.equal(false);
    });

    it("rejects unknown names listing the valid ones, with a did-you-mean", () => {
      expect(() => Counter.options({ router: "round_robin" as never })).to.throw(
        InvalidOptionsError,
        /Counter\.options\(\): router must be one of "least-loaded", "round-robin", "random", or a function \(candidates, call\) => candidate \| undefined \(got "round_robin"\); did you mean "round-robin"\?/,
      );
      for (const bad of [3, null, {}, "fastest", ""]) {
        let err: unknown;
        try {
          resolveServiceOptions({ router: bad as never });
        } catch (e) {
          err = e;
        }
        expect(err, String(bad)).to.be.instanceOf(InvalidOptionsError);
        expect((err as InvalidOptionsError).message).to.include('one of "least-loaded", "round-robin", "random"');
        expect((err as InvalidOptionsError).details).to.deep.include({ option: "router", valid: [...ROUTERS] });
      }
      expect(() => createRouter("fastest" as never)).to.throw(InvalidOptionsError, /createRouter: router must be one of/);
    });

    it("refuses a router with queue-group routing, naming the fix", () => {
      expect(() => Counter.options({ routing: "queue-group", router: "random" })).to.throw(InvalidOptionsError, /NATS picks the replica and no router runs: drop router/);
      expect(() => Counter.options({ router: "random" }).options({ routing: "queue-group" })).to.throw(InvalidOptionsError, /drop router \(or set it to undefined\)/);
      expect(Counter.options({ router: "random" }).options({ routing: "queue-group", router: undefined })).to.be.a("function");
      expect(resolveServiceOptions({ routing: "queue-group" }).router).to.equal("least-loaded"); // the default, unused
    });
  });
});
