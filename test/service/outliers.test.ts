import { expect } from "chai";
import { InvalidOptionsError } from "../../src/errors/index.ts";
import { resolveServiceOptions } from "../../src/service/index.ts";
import {
  answered,
  checkOutlierEjection,
  createTrack,
  ejectionTime,
  mayEject,
  OUTLIER_DEFAULTS,
  probeAnswered,
  probeFailed,
  stalled,
  timedOut,
  type OutlierPeer,
  type ResolvedOutlierOptions,
} from "../../src/service/outliers.ts";

/** Replicas as the policy sees them: a track each, healthy unless said otherwise. */
function replicas(n: number, unhealthy: number[] = []): OutlierPeer[] {
  return Array.from({ length: n }, (_, i) => ({ track: createTrack(), healthy: !unhealthy.includes(i) }));
}

describe("outlier ejection policy (pure: no NATS, no timers)", () => {
  const o: ResolvedOutlierOptions = { ...OUTLIER_DEFAULTS, consecutiveTimeouts: 2, ejectionMs: 1_000, maxEjectionMs: 8_000, maxEjectedPercent: 50 };

  it("ejects after consecutiveTimeouts in a row while another replica answers calls sent no earlier", () => {
    const [frozen, fine] = replicas(2);
    answered(fine!.track, 100);
    expect(timedOut(o, frozen!.track, 50, [frozen!, fine!], 2_050)).to.equal(false);
    expect(frozen!.track.ejected).to.equal(false);
    expect(timedOut(o, frozen!.track, 60, [frozen!, fine!], 2_060)).to.equal(true);
    expect(frozen!.track.ejected).to.equal(true);
    expect(frozen!.track.nextProbeAt).to.equal(2_060 + 1_000);
  });

  it("an answer resets the run: timeouts must be consecutive", () => {
    const [a, b] = replicas(2);
    answered(b!.track, 100);
    timedOut(o, a!.track, 50, [a!, b!], 1_000);
    answered(a!.track, 70);
    expect(timedOut(o, a!.track, 80, [a!, b!], 1_100)).to.equal(false);
    expect(a!.track.consecutive).to.equal(1);
  });

  it("does not eject when nobody answers (every replica times out: the calls are too slow, not the replica)", () => {
    const [a, b] = replicas(2);
    answered(b!.track, 10); // b answered only calls sent before a's timed-out ones
    for (let i = 0; i < 5; i++) expect(timedOut(o, a!.track, 100 + i, [a!, b!], 2_000 + i)).to.equal(false);
    for (let i = 0; i < 5; i++) expect(timedOut(o, b!.track, 100 + i, [a!, b!], 2_000 + i)).to.equal(false);
  });

  it("never ejects the last routable replica, nor more than maxEjectedPercent", () => {
    const three = replicas(3);
    for (const p of three) answered(p.track, 1_000);
    const [a, b, c] = three;
    timedOut(o, a!.track, 500, three, 3_000);
    expect(timedOut(o, a!.track, 500, three, 3_000)).to.equal(true);
    // 50% of 3 healthy is 1: b stays in routing whatever it does.
    timedOut(o, b!.track, 500, three, 3_000);
    expect(timedOut(o, b!.track, 500, three, 3_000)).to.equal(false);
    expect(mayEject(o, c!.track, three)).to.equal(false);
    // With 100%, all but one may go.
    const all = { ...o, maxEjectedPercent: 100 };
    expect(mayEject(all, b!.track, three)).to.equal(true);
    b!.track.ejected = true;
    expect(mayEject(all, c!.track, three)).to.equal(false);
    // A single replica is never ejected.
    const [only] = replicas(1);
    expect(stalled(all, only!.track, 0, [only!], 0)).to.equal(false);
  });

  it("counts only healthy replicas: a dead peer does not make room for an ejection", () => {
    const peers = replicas(2, [1]);
    answered(peers[1]!.track, 1_000);
    expect(stalled(o, peers[0]!.track, 0, peers, 2_000)).to.equal(false);
  });

  it("a stalled heartbeat ejects at once while another replica answers calls sent since the ping", () => {
    const peers = replicas(2);
    answered(peers[1]!.track, 3_000);
    expect(stalled(o, peers[0]!.track, 3_500, peers, 5_000), "nobody answered since: our own connection may be the problem").to.equal(false);
    expect(stalled(o, peers[0]!.track, 3_000, peers, 5_000)).to.equal(true);
    expect(peers[0]!.track.nextProbeAt).to.equal(6_000);
    expect(stalled(o, peers[0]!.track, 3_000, peers, 5_100), "already out").to.equal(false);
  });

  it("probes: an answer puts it back; no answer probes again after ejectionMs; ejections in a row double the wait", () => {
    const peers = replicas(2);
    answered(peers[1]!.track, 0);
    const t = peers[0]!.track;
    stalled(o, t, 0, peers, 0);
    probeFailed(o, t, 1_000);
    expect(t.ejected).to.equal(true);
    expect(t.nextProbeAt).to.equal(2_000);
    probeAnswered(t, 2_000);
    expect(t.ejected).to.equal(false);
    expect(t.consecutive).to.equal(0);
    // Out again soon after: the wait doubles, up to maxEjectionMs.
    stalled(o, t, 0, peers, 2_100);
    expect(t.nextProbeAt - 2_100).to.equal(2_000);
    for (let i = 0; i < 5; i++) {
      probeAnswered(t, 10_000 + i);
      stalled(o, t, 0, peers, 10_000 + i);
    }
    expect(t.nextProbeAt - 10_004).to.equal(8_000);
    // Back and fine for maxEjectionMs: the next ejection starts over.
    probeAnswered(t, 20_000);
    stalled(o, t, 0, peers, 28_000);
    expect(t.nextProbeAt - 28_000).to.equal(1_000);
    expect(ejectionTime(o, 1)).to.equal(1_000);
    expect(ejectionTime(o, 100)).to.equal(8_000);
  });

  it("options: on by default, false turns it off, objects are checked through the kit", () => {
    expect(resolveServiceOptions({}).outlierEjection).to.deep.equal(OUTLIER_DEFAULTS);
    expect(resolveServiceOptions({ outlierEjection: false }).outlierEjection).to.equal(false);
    expect(resolveServiceOptions({ outlierEjection: { consecutiveTimeouts: 4 } }).outlierEjection).to.deep.equal({ ...OUTLIER_DEFAULTS, consecutiveTimeouts: 4 });
    expect(() => resolveServiceOptions({ outlierEjection: { consecutiveTimeout: 4 } as never })).to.throw(InvalidOptionsError, /unknown option "consecutiveTimeout".*consecutiveTimeouts/s);
    expect(() => resolveServiceOptions({ outlierEjection: "yes" as never })).to.throw(InvalidOptionsError, /true, false, or an object/);
    expect(() => checkOutlierEjection({ ejectionMs: 5_000, maxEjectionMs: 1_000 }, "outlierEjection", "test")).to.throw(InvalidOptionsError, /maxEjectionMs/);
  });
});
