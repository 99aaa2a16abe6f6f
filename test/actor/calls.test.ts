import { expect } from "chai";
import {
  CallTimeoutError,
  CodecError,
  getServices,
  handleInfo,
  MethodNotFoundError,
  OverloadedError,
  RemoteError,
  ServiceUnavailableError,
  type Backend,
  type Services,
} from "../../src/index.ts";
import { SlowService } from "../fixtures/services.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";

for (const backend of ["local", "nats"] as Backend[]) {
  describe(`actor calls (${backend} backend)`, () => {
    let services: Services;
    beforeEach(async () => {
      services = await getServices({ backend, namespace: uniqueNamespace(), servers: testUrl() });
    });
    afterEach(async () => {
      await services.reset();
      await services.close();
    });

    it("awaiting a handle makes no remote call", async () => {
      const h = await services.register("slow", SlowService);
      const same = await h; // `then` is not a remote method
      expect(handleInfo(same)?.name).to.equal("slow");
      expect(String(h.constructor)).to.equal("undefined");
      expect((await h.stats()).started).to.equal(0);
    });

    it("serves one call at a time by default, in order (actor mailbox)", async () => {
      const h = await services.register("slow", SlowService);
      const order: number[] = [];
      await Promise.all([30, 10, 20].map((ms) => h.sleep(ms).then((v) => order.push(v))));
      expect(order).to.deep.equal([30, 10, 20]);
      expect((await h.stats()).maxRunning).to.equal(1);
    });

    it("rejects calls beyond maxPending with a retryable OverloadedError", async () => {
      const h = await services.registerWithOptions("slow", SlowService, { maxConcurrency: 1, maxPending: 2 });
      const results = await Promise.allSettled([h.sleep(100), h.sleep(1), h.sleep(1), h.sleep(1), h.sleep(1)]);
      const rejected = results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason);
      expect(rejected).to.have.length(2);
      for (const e of rejected) {
        expect(e).to.be.instanceOf(OverloadedError);
        expect(e.retryable).to.equal(true);
      }
    });

    it("gives the caller a RemoteError with the remote name, message and stack", async () => {
      const h = await services.register("slow", SlowService);
      const err = await h.fail("bad input").catch((e: any) => e);
      expect(err).to.be.instanceOf(RemoteError);
      expect(err.code).to.equal("REMOTE");
      expect(err.retryable).to.equal(false);
      expect(err.message).to.equal("bad input");
      expect(err.remoteName).to.equal("RangeError");
      expect(err.remoteStack).to.contain("SlowService.fail");
    });

    it("answers an unknown method with MethodNotFoundError listing the methods", async () => {
      const h = (await services.register("slow", SlowService)) as unknown as Record<string, () => Promise<unknown>>;
      for (const m of ["nope", "__proto__", "_private", "hasOwnProperty", "__defineGetter__"]) {
        const err: any = await h[m]!().catch((e: any) => e);
        expect(err, m).to.be.instanceOf(MethodNotFoundError);
        expect(err.message).to.contain("sleep");
      }
    });

    it("fails fast with ServiceUnavailableError when nobody listens", async () => {
      const h = services.at("nobody", { timeoutMs: 20_000 });
      await services.serve("nobody", SlowService, {});
      await services.reset(); // registry entry gone and actor stopped
      const t0 = Date.now();
      const err: any = await h.echo(1).catch((e: any) => e);
      expect(err.name).to.be.oneOf(["ServiceUnavailableError", "ServiceNotFoundError"]);
      expect(Date.now() - t0).to.be.lessThan(2_000);
    });

    it("fails at the deadline with CallTimeoutError, and the actor skips work whose caller gave up", async () => {
      await services.register("slow", SlowService);
      const h = await services.get<SlowService>("slow", { timeoutMs: 150 });
      const blocker = h.sleep(400).catch((e: any) => e);
      const late = await h.sleep(1).catch((e: any) => e); // queued behind the blocker past its deadline
      expect(late).to.be.instanceOf(CallTimeoutError);
      expect(late.retryable).to.equal(true);
      expect(await blocker).to.be.instanceOf(CallTimeoutError);
      const patient = await services.get<SlowService>("slow", { timeoutMs: 5_000 });
      await until(async () => (await patient.stats()).running === 0, 5_000, "blocker to finish");
      expect((await patient.stats()).started).to.equal(1); // the late call never ran
    });

    it("refuses values the wire cannot carry with CodecError before sending", async () => {
      const h = await services.register("slow", SlowService);
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      for (const bad of [() => 1, Symbol("s"), cyclic, { nested: [() => 2] }]) {
        const err = await h.echo(bad as never).catch((e: any) => e);
        expect(err, String(typeof bad)).to.be.instanceOf(CodecError);
      }
      // Values over max_payload travel in chunks (test/chunks); over maxValueBytes, nothing is sent.
      const strict = await getServices({ backend, namespace: services.namespace, servers: testUrl(), maxValueBytes: 1024 * 1024 });
      const big = new Uint8Array(2 * 1024 * 1024);
      const err: any = await (await strict.get<SlowService>("slow")).echo(big).catch((e: any) => e);
      await strict.close();
      expect(err).to.be.instanceOf(CodecError);
      expect(err.message).to.contain("maxValueBytes");
      const ret = await h.returnsFunction().catch((e: any) => e);
      expect(ret).to.be.instanceOf(CodecError);
      expect((await h.stats()).started).to.equal(0);
    });

    it("round-trips typed arrays, Map, Set, Date and BigInt", async () => {
      const h = await services.register("slow", SlowService);
      const value = {
        f32: new Float32Array([0.5, -1.25]),
        i32: new Int32Array([1, -2, 3]),
        f64: new Float64Array([Math.PI]),
        u8: new Uint8Array([1, 2, 255]),
        big64: new BigInt64Array([-5n]),
        map: new Map<unknown, unknown>([["a", 1], [2, new Set(["x"])]]),
        date: new Date("2026-01-02T03:04:05.678Z"),
        big: 2n ** 60n,
        huge: -(2n ** 100n),
        large: 2 ** 53 - 1,
        nested: [{ a: [1, "two", null, true] }],
      };
      const back: any = await h.echo(value);
      expect(back.f32).to.be.instanceOf(Float32Array).and.deep.equal(value.f32);
      expect(back.i32).to.be.instanceOf(Int32Array).and.deep.equal(value.i32);
      expect(back.f64).to.be.instanceOf(Float64Array).and.deep.equal(value.f64);
      expect(back.u8).to.be.instanceOf(Uint8Array).and.deep.equal(value.u8);
      expect(back.big64).to.be.instanceOf(BigInt64Array).and.deep.equal(value.big64);
      expect(back.map).to.be.instanceOf(Map).and.deep.equal(value.map);
      expect(back.date).to.be.instanceOf(Date).and.deep.equal(value.date);
      expect(back.big).to.equal(value.big);
      expect(back.huge).to.equal(value.huge);
      expect(back.large).to.equal(value.large);
      expect(back.nested).to.deep.equal(value.nested);
    });

    it("close() lets in-flight calls finish before the connection goes", async () => {
      const other = await getServices({ backend, namespace: services.namespace, servers: testUrl() });
      await other.register("slow", SlowService);
      const h = await services.get<SlowService>("slow");
      const inFlight = h.sleep(200);
      await until(async () => (await services.status())[0]?.instances[0]?.stats?.running === 1, 5_000, "call to start");
      await other.close();
      expect(await inFlight).to.equal(200);
    });

    it("the per-handle deadline overrides the service default", async () => {
      await services.registerWithOptions("slow", SlowService, { timeoutMs: 50 });
      const short = await services.get<SlowService>("slow");
      expect(handleInfo(short)?.timeoutMs).to.equal(50);
      expect(await short.sleep(200).catch((e) => e)).to.be.instanceOf(CallTimeoutError);
      const long = await services.get<SlowService>("slow", { timeoutMs: 2_000 });
      expect(await long.sleep(200)).to.equal(200);
    });

    it("status() reports instances with call counts", async () => {
      const h = await services.register("slow", SlowService);
      await h.echo(1);
      await h.fail("x").catch(() => {});
      const [s] = await services.status();
      expect(s!.record.name).to.equal("slow");
      expect(s!.instances[0]!.stats).to.include({ calls: 2, errors: 1 });
      expect(s!.instances[0]!.info.pid).to.equal(process.pid);
    });
  });
}

describe("ServiceUnavailableError", () => {
  it("is retryable", () => {
    expect(new ServiceUnavailableError("x").retryable).to.equal(true);
  });
});
