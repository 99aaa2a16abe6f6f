import { expect } from "chai";
import { createRunQueue } from "../../src/actor/run-queue.ts";

describe("run queue (no NATS)", () => {
  const gate = () => {
    let open!: () => void;
    const p = new Promise<void>((r) => (open = r));
    return { p, open };
  };

  it("works through a long queue of jobs that finish at once in one pass, in order, without recursing per job", async () => {
    const g = gate();
    const ran: number[] = [];
    const q = createRunQueue<number>(1, (i) => {
      ran.push(i);
      return i === 0 ? g.p : undefined; // the first holds the slot; the rest finish as they start
    });
    for (let i = 0; i < 200_000; i++) q.push(i); // a recursion per job would overflow the stack
    expect(ran).to.deep.equal([0]);
    g.open();
    await g.p;
    await new Promise((r) => setImmediate(r));
    expect(ran.length).to.equal(200_000);
    expect(ran.every((v, i) => v === i)).to.equal(true);
    expect([q.running, q.waiting]).to.deep.equal([0, 0]);
    await q.onIdle();
  });

  it("starts a job at once below the cap, queues the rest in order, and never runs more than the cap", async () => {
    const gates = Array.from({ length: 5 }, gate);
    const started: number[] = [];
    let running = 0;
    let most = 0;
    const q = createRunQueue<number>(2, async (i) => {
      started.push(i);
      most = Math.max(most, ++running);
      await gates[i]!.p;
      running--;
    });
    for (let i = 0; i < 5; i++) q.push(i);
    expect(started).to.deep.equal([0, 1]); // synchronously, in push()
    expect([q.running, q.waiting]).to.deep.equal([2, 3]);
    gates[1]!.open();
    await new Promise((r) => setImmediate(r));
    expect(started).to.deep.equal([0, 1, 2]);
    for (const g of gates) g.open();
    await q.onIdle();
    expect(started).to.deep.equal([0, 1, 2, 3, 4]);
    expect(most).to.equal(2);
    expect([q.running, q.waiting]).to.deep.equal([0, 0]);
  });

  it("clear() drops the waiting jobs and returns them; a job that throws synchronously frees its slot", async () => {
    const g = gate();
    const ran: string[] = [];
    const q = createRunQueue<string>(1, (j) => {
      ran.push(j);
      if (j === "throws") throw new Error("sync");
      return j === "blocks" ? g.p : undefined;
    });
    q.push("throws");
    q.push("blocks");
    q.push("a");
    q.push("b");
    expect(q.clear()).to.deep.equal(["a", "b"]);
    g.open();
    await q.onIdle();
    expect(ran).to.deep.equal(["throws", "blocks"]);
  });

  it("keeps order across many jobs through its compaction", async () => {
    const seen: number[] = [];
    const q = createRunQueue<number>(1, async (i) => {
      seen.push(i);
      await null;
    });
    for (let i = 0; i < 5000; i++) q.push(i);
    await q.onIdle();
    expect(seen).to.deep.equal(Array.from({ length: 5000 }, (_, i) => i));
  });

  it("an exclusive job (a rolling update's call) waits for the running jobs and runs alone; later jobs wait for it", async () => {
    const gates = new Map<string, ReturnType<typeof gate>>();
    const log: string[] = [];
    let running = 0;
    const q = createRunQueue<string>(4, async (j) => {
      log.push(`start ${j} (${running} running)`);
      running++;
      const g = gate();
      gates.set(j, g);
      await g.p;
      running--;
      log.push(`end ${j}`);
    });
    const tick = () => new Promise((r) => setImmediate(r));
    q.push("a");
    q.push("b");
    q.pushExclusive("update");
    q.push("c");
    expect(log).to.deep.equal(["start a (0 running)", "start b (1 running)"]);
    gates.get("a")!.open();
    await tick();
    expect(log.at(-1), "still waits for b").to.equal("end a");
    gates.get("b")!.open();
    await tick();
    expect(log.slice(-2)).to.deep.equal(["end b", "start update (0 running)"]);
    q.push("d"); // arrives mid-update: waits, though slots are free
    await tick();
    expect(log.at(-1)).to.equal("start update (0 running)");
    gates.get("update")!.open();
    await tick();
    expect(log.slice(-3)).to.deep.equal(["end update", "start c (0 running)", "start d (1 running)"]);
    gates.get("c")!.open();
    gates.get("d")!.open();
    await q.onIdle();
    // Idle queue: an exclusive job starts at once.
    q.pushExclusive("u2");
    expect(log.at(-1)).to.equal("start u2 (0 running)");
    q.push("e");
    expect(log.at(-1)).to.equal("start u2 (0 running)");
    gates.get("u2")!.open();
    await tick();
    expect(log.at(-1)).to.equal("start e (0 running)");
    gates.get("e")!.open();
    await q.onIdle();
  });
});
