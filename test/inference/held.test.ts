import { expect } from "chai";
import { createCodec } from "../../src/codec/index.ts";
import { HeldRequests } from "../../src/inference/held.ts";
import { LeaseSubjects } from "../../src/inference/lease-subject.ts";

const held = (leaseSubject: string, seq: number) => ({ leaseSubject, seq, receivedAt: 0, leaseMs: 1_000 });

describe("NatsTransport server bookkeeping: held requests and lease subjects", () => {
  it("holds requests by client and seq: add, get, remove, size", () => {
    const h = new HeldRequests<ReturnType<typeof held>>();
    const a1 = held("a", 1);
    const a2 = held("a", 2);
    const b1 = held("b", 1);
    for (const x of [a1, a2, b1]) h.add(x);
    expect(h.size).to.equal(3);
    expect(h.get("a", 2)).to.equal(a2);
    expect(h.get("b", 1)).to.equal(b1);
    expect(h.get("b", 2)).to.equal(undefined);
    expect(h.remove(a2)).to.equal(true);
    expect(h.remove(a2)).to.equal(false); // removing twice is a no-op
    expect(h.get("a", 2)).to.equal(undefined);
    expect(h.size).to.equal(2);
    expect([...h.clients()].map(([c, t]) => [c, [...t.keys()]])).to.deep.equal([["a", [1]], ["b", [1]]]);
  });

  it("a reused seq takes the entry; the earlier request's removal leaves the count right", () => {
    const h = new HeldRequests<ReturnType<typeof held>>();
    const first = held("a", 7);
    const again = held("a", 7);
    h.add(first);
    h.add(again);
    expect(h.size).to.equal(1);
    expect(h.get("a", 7)).to.equal(again);
    expect(h.remove(first)).to.equal(false);
    expect(h.size).to.equal(1);
    expect(h.remove(again)).to.equal(true);
    expect(h.size).to.equal(0);
  });

  it("prune() forgets clients with nothing held, and a pruned client can come back", () => {
    const h = new HeldRequests<ReturnType<typeof held>>();
    const a = held("a", 1);
    const b = held("b", 1);
    h.add(a);
    h.add(b);
    h.remove(a);
    h.prune();
    expect([...h.clients()].map(([c]) => c)).to.deep.equal(["b"]);
    const a2 = held("a", 2);
    h.add(a2);
    expect(h.get("a", 2)).to.equal(a2);
    expect(h.remove(a2)).to.equal(true);
    expect(h.size).to.equal(1);
  });

  it("reads lease subjects sent as bytes (current clients) or as strings (earlier ones)", () => {
    const prefix = "ab.ns.inf.policy.lease.";
    const leases = new LeaseSubjects(prefix);
    const subject = `${prefix}Client_01-x`;
    const bytes = new TextEncoder().encode(subject);
    expect(leases.read(bytes)).to.equal(subject);
    expect(leases.read(bytes.slice())).to.equal(subject); // same bytes again: the kept subject
    expect(leases.read(subject)).to.equal(subject);
    const other = `${prefix}other`;
    expect(leases.read(new TextEncoder().encode(other))).to.equal(other);
    // Through the wire codec, as a request carries it: bin decodes as a view into the message.
    const codec = createCodec();
    const [, wire] = codec.decode<[number, Uint8Array]>(codec.encode([1, bytes]));
    expect(leases.read(wire)).to.equal(subject);
  });

  it("refuses lease subjects outside this server's prefix, bad client ids and other types", () => {
    const prefix = "ab.ns.inf.policy.lease.";
    const leases = new LeaseSubjects(prefix);
    const te = new TextEncoder();
    expect(leases.read(`${prefix}ok`)).to.equal(`${prefix}ok`);
    for (const bad of ["ab.ns.inf.other.lease.x", `${prefix}`, `${prefix}a.b`, `${prefix}a b`, "$SYS.anything", `${prefix}${"x".repeat(129)}`]) {
      expect(leases.read(bad), bad).to.equal(undefined);
      expect(leases.read(te.encode(bad)), bad).to.equal(undefined);
    }
    expect(leases.read(new Uint8Array([0xff, 0xfe]))).to.equal(undefined);
    for (const bad of [42, null, undefined, {}, [prefix]]) expect(leases.read(bad)).to.equal(undefined);
    // A refused subject does not replace the one kept.
    expect(leases.read(`${prefix}ok`)).to.equal(`${prefix}ok`);
  });
});

describe("withVersion: the copy each result is tagged in", () => {
  it("copies own enumerable keys in order, symbols included, and keeps an own __proto__ key a key", async () => {
    const { withVersion } = await import("../../src/inference/weights.ts");
    const s = Symbol("s");
    const result = JSON.parse('{"__proto__": {"polluted": true}, "b": 2, "1": 3}') as Record<string | symbol, unknown>;
    result[s] = 4;
    Object.defineProperty(result, "hidden", { value: 5, enumerable: false });
    const tagged = withVersion(result, ["policyVersion"], 7) as Record<string | symbol, unknown>;
    expect(Reflect.ownKeys(tagged)).to.deep.equal(Reflect.ownKeys({ ...result, policyVersion: 7 }));
    expect(Object.getPrototypeOf(tagged)).to.equal(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
    expect(Object.getOwnPropertyDescriptor(tagged, "__proto__")!.value).to.deep.equal({ polluted: true });
    expect([tagged.b, tagged[1], tagged[s], tagged.policyVersion, tagged.hidden]).to.deep.equal([2, 3, 4, 7, undefined]);
    expect(result.policyVersion).to.equal(undefined); // the result itself is left alone
    const nested = withVersion({ a: 1, info: { x: 1 } }, ["info", "policyVersion"], 3);
    expect(nested).to.deep.equal({ a: 1, info: { x: 1, policyVersion: 3 } });
  });
});
