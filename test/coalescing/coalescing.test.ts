import { connect, headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { expect } from "chai";
import {
  CallTimeoutError,
  CancelledError,
  CodecError,
  createCodec,
  getServices,
  MethodNotFoundError,
  OverloadedError,
  RemoteError,
  startNatsServer,
  withOptions,
  type NatsServerProcess,
  type Services,
} from "../../src/index.ts";
import { BATCH_HEADER, MAX_BATCH_CALLS } from "../../src/connection/index.ts";
import { encodeBatch, forEachReply, sendReplies, unbatch } from "../../src/connection/batch.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { SlowService } from "../fixtures/services.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { killAllWorkers, startWorker } from "../helpers/processes.ts";

/** Watches a subject and the reply inboxes with a plain connection: what actually crossed the wire. */
async function spyOn(url: string, subject: string) {
  const nc = await connect({ servers: url });
  const calls: { batch: number; bytes: number }[] = [];
  const combined: { replies: number; bytes: number }[] = [];
  nc.subscribe(subject, {
    callback: (_e, m: Msg) => {
      calls.push({ batch: Number(m.headers?.get(BATCH_HEADER) || 1), bytes: m.data.length });
    },
  });
  nc.subscribe("_INBOX.>", {
    callback: (_e, m: Msg) => {
      if (!m.subject.endsWith(".0")) return;
      let n = 0;
      forEachReply(m.data, () => n++);
      combined.push({ replies: n, bytes: m.data.length });
    },
  });
  await nc.flush();
  return { nc, calls, combined };
}

describe("coalescing: the wire format", () => {
  const block = "NATS/1.0\r\nAb-Call: 500 c1 echo\r\n\r\n";
  const entry = (token: number, data: number[]) => ({ token, headerBlock: block, headerBytes: block.length, data: new Uint8Array(data) });

  it("round-trips a batch: each call keeps its headers, payload and reply subject", () => {
    const data = encodeBatch([entry(7, [1, 2]), entry(9, [])]);
    const sent: [string, number][] = [];
    const calls = unbatch({ subject: "s", data, reply: "_INBOX.x.7", respond: () => true }, "2", 10, (s, d) => sent.push([s, d.length]));
    expect(calls.map((c) => c.reply)).to.deep.equal(["_INBOX.x.7", "_INBOX.x.9"]);
    expect([...calls[0]!.data]).to.deep.equal([1, 2]);
    expect(calls[1]!.headers!.get("Ab-Call")).to.equal("500 c1 echo");
    calls[1]!.respond(new Uint8Array(3));
    expect(sent).to.deep.equal([["_INBOX.x.9", 3]]);
  });

  it("refuses malformed batches with a CodecError and serves none of them", () => {
    const good = encodeBatch([entry(1, [1]), entry(2, [2])]);
    const msg = (data: Uint8Array) => ({ subject: "s", data, reply: "_INBOX.x.1", respond: () => true });
    const nop = () => {};
    expect(() => unbatch(msg(good), "3", 10, nop)).to.throw(CodecError, /truncated/);
    expect(() => unbatch(msg(good), "1", 10, nop)).to.throw(CodecError, /after its last call/);
    expect(() => unbatch(msg(good.subarray(0, good.length - 1)), "2", 10, nop)).to.throw(CodecError, /truncated/);
    expect(() => unbatch(msg(good), "x", 10, nop)).to.throw(CodecError, /count of 1\.\.10/);
    expect(() => unbatch(msg(good), "11", 10, nop)).to.throw(CodecError, /count/);
    expect(() => unbatch(msg(encodeBatch([entry(0, [])])), "1", 10, nop)).to.throw(CodecError, /reserved/);
    expect(() => unbatch({ ...msg(good), reply: undefined }, "2", 10, nop)).to.throw(CodecError, /reply subject/);
  });

  it("combines replies per caller within max_payload; a lone or oversized reply goes alone", () => {
    const data = encodeBatch([1, 2, 3, 4].map((t) => entry(t, [])));
    const calls = unbatch({ subject: "s", data, reply: "_INBOX.a.1", respond: () => true }, "4", 10, () => {});
    const published: [string, number][] = [];
    const alone: string[] = [];
    const plain = { subject: "s", data: new Uint8Array(), reply: "_INBOX.b.5", respond: () => true };
    sendReplies(
      [[calls[0]!, new Uint8Array(40)], [calls[1]!, new Uint8Array(40)], [calls[2]!, new Uint8Array(40)], [calls[3]!, new Uint8Array(200)], [plain, new Uint8Array(1)]],
      100,
      (s, d) => {
        published.push([s, d.length]);
        const tokens: number[] = [];
        expect(forEachReply(d, (t) => tokens.push(t))).to.equal(true);
      },
      (m) => alone.push(m.reply!),
    );
    // 48 + 48 fit in 100; the third starts a part of its own (alone); 200 bytes never fit.
    expect(published).to.deep.equal([["_INBOX.a.0", 96]]);
    expect(alone).to.have.members(["_INBOX.a.3", "_INBOX.a.4", "_INBOX.b.5"]);
  });
});

describe("coalescing: calls to one subject in one tick", function () {
  this.timeout(30_000);
  let services: Services;
  let ns: string;
  let spy: Awaited<ReturnType<typeof spyOn>> | undefined;
  beforeEach(async () => {
    ns = uniqueNamespace("co");
    services = await getServices({ namespace: ns, servers: testUrl() });
  });
  afterEach(async () => {
    await spy?.nc.close();
    spy = undefined;
    await services.reset();
    await services.close();
    await killAllWorkers();
  });

  it("leave as one message and come back in combined replies, each call with its own result", async () => {
    const h = await services.registerWithOptions("slow", SlowService, { maxConcurrency: 64 });
    spy = await spyOn(testUrl(), subjectsFor(ns).call("slow"));
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => h.echo({ i })));
    expect(results).to.deep.equal(Array.from({ length: 50 }, (_, i) => ({ i })));
    await until(() => spy!.calls.length > 0);
    expect(spy.calls).to.deep.equal([{ batch: 50, bytes: spy.calls[0]!.bytes }]);
    // How many combine depends on how the host's turns fall; that some do is what is checked.
    // The spy hears the replies on a connection of its own, perhaps after the caller did.
    await until(() => spy!.combined.reduce((n, c) => n + c.replies, 0) > 1).catch(() => {});
    expect(spy.combined.reduce((n, c) => n + c.replies, 0)).to.be.greaterThan(1);
    // A lone call is a plain message, sent without waiting for company.
    spy.calls.length = 0;
    expect(await h.echo("alone")).to.equal("alone");
    await until(() => spy!.calls.length > 0);
    expect(spy.calls).to.deep.equal([{ batch: 1, bytes: spy.calls[0]!.bytes }]);
  });

  it("with coalesce: false on the caller's connection, every call is a message of its own and no reply is combined", async () => {
    const h = await services.registerWithOptions("slow", SlowService, { maxConcurrency: 64 });
    const plain = await getServices({ namespace: ns, servers: testUrl(), coalesce: false });
    try {
      spy = await spyOn(testUrl(), subjectsFor(ns).call("slow"));
      const caller = await plain.get<SlowService>("slow");
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => caller.echo(i)));
      expect(results).to.deep.equal(Array.from({ length: 20 }, (_, i) => i));
      await until(() => spy!.calls.length >= 20);
      expect(spy.calls.every((c) => c.batch === 1)).to.equal(true);
      expect(spy.combined).to.deep.equal([]);
      expect(await h.echo("coalescing callers still batch")).to.equal("coalescing callers still batch");
    } finally {
      await plain.close();
    }
  });

  it("give each call of a batch its own outcome: results, remote errors, unknown methods, unencodable results, timeouts", async () => {
    const h = await services.registerWithOptions("slow", SlowService, { maxConcurrency: 8 });
    const tight = withOptions(h, { timeoutMs: 150 });
    const any = h as unknown as Record<string, () => Promise<unknown>>;
    const settled = await Promise.allSettled([h.echo(1), h.fail("boom"), any.nope!(), h.returnsFunction(), tight.sleep(2_000), h.sleep(20), h.echo(2)]);
    const [ok1, remote, missing, codec, timeout, slept, ok2] = settled.map((s) => (s.status === "fulfilled" ? s.value : s.reason));
    expect(ok1).to.equal(1);
    expect(ok2).to.equal(2);
    expect(slept).to.equal(20);
    expect(remote).to.be.instanceOf(RemoteError).and.have.property("message").that.contains("boom");
    expect(missing).to.be.instanceOf(MethodNotFoundError);
    expect(codec).to.be.instanceOf(CodecError);
    expect(timeout).to.be.instanceOf(CallTimeoutError);
  });

  it("keep their own deadlines: the tight one times out, the loose one in the same batch succeeds", async () => {
    const h = await services.registerWithOptions("slow", SlowService, { maxConcurrency: 4 });
    spy = await spyOn(testUrl(), subjectsFor(ns).call("slow"));
    const t0 = Date.now();
    const [tight, loose] = await Promise.allSettled([withOptions(h, { timeoutMs: 100 }).sleep(400), withOptions(h, { timeoutMs: 5_000 }).sleep(400)]);
    expect(tight.status === "rejected" && tight.reason).to.be.instanceOf(CallTimeoutError);
    expect(loose.status === "fulfilled" && loose.value).to.equal(400);
    expect(Date.now() - t0).to.be.lessThan(4_000);
    expect(spy.calls[0]!.batch).to.equal(2);
  });

  it("cancel one call of a batch: it never runs (or stops), the others are served", async () => {
    const h = await services.registerWithOptions("slow", SlowService, { maxConcurrency: 1 });
    const controllers = Array.from({ length: 5 }, () => new AbortController());
    const calls = controllers.map((ac) => withOptions(h, { signal: ac.signal }).sleep(50));
    // Abort the third while it waits in the host's queue, once the first has finished.
    await calls[0];
    controllers[2]!.abort();
    const settled = await Promise.allSettled(calls);
    expect(settled.map((s) => s.status)).to.deep.equal(["fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled"]);
    expect((settled[2] as PromiseRejectedResult).reason).to.be.instanceOf(CancelledError);
    expect((await h.stats()).started).to.equal(4);
  });

  it("a call aborted before its batch leaves is never sent", async () => {
    const h = await services.registerWithOptions("slow", SlowService, { maxConcurrency: 4 });
    spy = await spyOn(testUrl(), subjectsFor(ns).call("slow"));
    const ac = new AbortController();
    const calls = [h.echo(1), withOptions(h, { signal: ac.signal }).echo(2), h.echo(3)];
    ac.abort(); // same tick: the batch has not left yet
    const settled = await Promise.allSettled(calls);
    expect(settled.map((s) => s.status)).to.deep.equal(["fulfilled", "rejected", "fulfilled"]);
    await until(() => spy!.calls.length > 0);
    expect(spy.calls.map((c) => c.batch)).to.deep.equal([2]);
  });

  it("count calls, not messages, against maxConcurrency and maxPending", async () => {
    const h = await services.registerWithOptions("slow", SlowService, { maxConcurrency: 1, maxPending: 2 });
    spy = await spyOn(testUrl(), subjectsFor(ns).call("slow"));
    const settled = await Promise.allSettled(Array.from({ length: 8 }, () => h.sleep(30)));
    expect(spy.calls.map((c) => c.batch)).to.deep.equal([8]);
    const overloaded = settled.filter((s) => s.status === "rejected").map((s) => (s as PromiseRejectedResult).reason);
    expect(overloaded).to.have.length(5);
    for (const e of overloaded) expect(e).to.be.instanceOf(OverloadedError);
  });

  it("a host that dies holding a batch: every call fails typed within its deadline, none hangs", async () => {
    const worker = startWorker("host-slow", { url: testUrl(), namespace: ns, name: "held", maxConcurrency: 2 });
    await worker.next();
    const h = await services.get<SlowService>("held", { timeoutMs: 1_500 });
    spy = await spyOn(testUrl(), subjectsFor(ns).call("held"));
    const t0 = Date.now();
    const calls = Array.from({ length: 6 }, () => h.sleep(10_000).catch((e: unknown) => e));
    await until(() => spy!.calls.length > 0, 5_000, "the batch to leave");
    worker.child.kill("SIGKILL");
    const errors = await Promise.all(calls);
    for (const e of errors) {
      expect(e).to.be.instanceOf(CallTimeoutError);
      expect((e as CallTimeoutError).retryable).to.equal(true);
    }
    // At the deadline (1.5 s), with room for a loaded machine; never the method's 10 s.
    expect(Date.now() - t0).to.be.lessThan(4_500);
  });

  it("answers a malformed batch with a CodecError and keeps serving", async () => {
    const h = await services.register("slow", SlowService);
    const nc: NatsConnection = await connect({ servers: testUrl() });
    const codec = createCodec();
    try {
      const hdrs = natsHeaders();
      hdrs.set(BATCH_HEADER, String(MAX_BATCH_CALLS + 1));
      const reply = await nc.request(subjectsFor(ns).call("slow"), new Uint8Array(10), { headers: hdrs, timeout: 2_000 });
      const answer = codec.decode<[number, { code: string; message: string }]>(reply.data);
      expect(answer[1].code).to.equal("CODEC");
      const hdrs2 = natsHeaders();
      hdrs2.set(BATCH_HEADER, "2");
      const truncated = await nc.request(subjectsFor(ns).call("slow"), encodeBatch([{ token: 1, headerBlock: "NATS/1.0\r\n\r\n", headerBytes: 12, data: new Uint8Array(4) }]), { headers: hdrs2, timeout: 2_000 });
      expect(codec.decode<[number, { code: string }]>(truncated.data)[1].code).to.equal("CODEC");
    } finally {
      await nc.close();
    }
    expect(await h.echo("still serving")).to.equal("still serving");
  });
});

describe("coalescing: batches split at max_payload", function () {
  this.timeout(30_000);
  let server: NatsServerProcess;
  let services: Services;
  before(async () => {
    server = await startNatsServer({ config: "max_payload: 65536" });
  });
  after(async () => {
    await server?.stop();
  });
  beforeEach(async () => {
    services = await getServices({ namespace: uniqueNamespace("split"), servers: server.url });
  });
  afterEach(async () => {
    await services.reset();
    await services.close();
  });

  it("calls and replies are split into messages under the server's max_payload", async () => {
    const h = await services.registerWithOptions("slow", SlowService, { maxConcurrency: 16 });
    const spy = await spyOn(server.url, subjectsFor(services.namespace).call("slow"));
    try {
      const big = (i: number) => `${i}:${"x".repeat(20_000)}`;
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => h.echo(big(i))));
      expect(results).to.deep.equal(Array.from({ length: 12 }, (_, i) => big(i)));
      await until(() => spy.calls.reduce((n, c) => n + c.batch, 0) === 12);
      expect(spy.calls.length).to.be.greaterThan(3);
      for (const c of spy.calls) expect(c.bytes).to.be.at.most(65536);
      for (const c of spy.combined) expect(c.bytes).to.be.at.most(65536);
    } finally {
      await spy.nc.close();
    }
  });
});
