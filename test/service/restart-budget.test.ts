import { expect } from "chai";
import { InvalidOptionsError, PlacementError, ReplicaCrashedError } from "../../src/errors/index.ts";
import { resolveServiceOptions } from "../../src/service/index.ts";
import { createHistory, decideRestart, isPlacementFailure, noteDeath, recentRestarts, recordRestart, type RestartPolicy } from "../../src/service/restart-budget.ts";

describe("restart budget (pure: no NATS, no timers)", () => {
  const p: RestartPolicy = { maxRestarts: 3, restartWindowMs: 10_000, restartBackoffMs: 100, maxBackoffMs: 1_000, stableMs: 60_000 };

  it("allows maxRestarts within the window with doubling backoff, then calls it a crash loop", () => {
    const h = createHistory();
    const delays: number[] = [];
    for (let t = 0; ; t += 10) {
      const d = decideRestart(p, h, t);
      if (d.kind === "give-up") {
        expect(d.reason).to.match(/crash loop: 3 restarts within 10 s/).and.match(/maxRestarts 3/);
        break;
      }
      delays.push(d.delayMs);
      recordRestart(h, t);
    }
    expect(delays).to.deep.equal([100, 200, 400]);
  });

  it("forgets restarts older than the window (a crash a day is restarted every day)", () => {
    const h = createHistory();
    for (let day = 0; day < 10; day++) {
      const now = day * 86_400_000;
      expect(decideRestart(p, h, now).kind).to.equal("restart");
      recordRestart(h, now);
    }
    expect(recentRestarts(p, h, 9 * 86_400_000)).to.equal(1);
    // Three in quick succession are still a loop.
    recordRestart(h, 9 * 86_400_000 + 1);
    recordRestart(h, 9 * 86_400_000 + 2);
    expect(decideRestart(p, h, 9 * 86_400_000 + 3).kind).to.equal("give-up");
    // ...until they age out of the window.
    expect(decideRestart(p, h, 9 * 86_400_000 + 10_001).kind).to.equal("restart");
  });

  it("a replica healthy for stableMs before dying starts with a clean budget", () => {
    const h = createHistory();
    recordRestart(h, 0);
    recordRestart(h, 1);
    noteDeath(p, h, 59_999);
    expect(recentRestarts(p, h, 2)).to.equal(2);
    noteDeath(p, h, 60_000);
    expect(recentRestarts(p, h, 2)).to.equal(0);
  });

  it("-1 is no limit (Ray), 0 never restarts; backoff stops at maxBackoffMs", () => {
    const h = createHistory();
    for (let i = 0; i < 50; i++) recordRestart(h, i);
    const d = decideRestart({ ...p, maxRestarts: -1 }, h, 50);
    expect(d).to.deep.equal({ kind: "restart", delayMs: 1_000 });
    expect(decideRestart({ ...p, maxRestarts: 0 }, createHistory(), 0)).to.deep.equal({ kind: "give-up", reason: "restarts are off (maxRestarts 0)" });
  });

  it("only placement failures wait for capacity; a crash while starting spends the budget", () => {
    expect(isPlacementFailure(new PlacementError("no room"))).to.equal(true);
    expect(isPlacementFailure(new ReplicaCrashedError("died while starting"))).to.equal(false);
    expect(isPlacementFailure(new Error("import failed"))).to.equal(false);
  });

  it("options: maxRestarts -1 and restartWindowMs through the kit", () => {
    expect(resolveServiceOptions({}).restartWindowMs).to.equal(60_000);
    expect(resolveServiceOptions({ maxRestarts: -1 }).maxRestarts).to.equal(-1);
    expect(() => resolveServiceOptions({ maxRestarts: -2 })).to.throw(InvalidOptionsError, /maxRestarts must be an integer >= -1/);
    expect(() => resolveServiceOptions({ restartWindowMs: 0 })).to.throw(InvalidOptionsError, /restartWindowMs/);
  });
});
