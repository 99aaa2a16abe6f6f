import { expect } from "chai";
import {
  getServices,
  InvalidNameError,
  InvalidOptionsError,
  ServiceExistsError,
  ServiceNotFoundError,
  type Backend,
  type RegistryEvent,
  type Services,
} from "../../src/index.ts";
import { CounterService, SlowService, TokenizerService } from "../fixtures/services.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";

// TorchRL's test/services/test_services.py, for both backends.
for (const backend of ["local", "nats"] as Backend[]) {
  describe(`registry (${backend} backend)`, () => {
    const opened: Services[] = [];
    const open = async (namespace: string) => {
      const s = await getServices({ backend, namespace, servers: testUrl() });
      opened.push(s);
      return s;
    };
    let ns: string;
    let services: Services;
    beforeEach(async () => {
      ns = uniqueNamespace();
      services = await open(ns);
    });
    afterEach(async () => {
      for (const s of opened.splice(0).reverse()) {
        await s.reset().catch(() => {});
        await s.close();
      }
    });

    it("registers a service and calls it through a typed handle", async () => {
      const h = await services.register("tokenizer", TokenizerService, { vocabSize: 50000 });
      const ids: number[] = await h.encode("Hello world");
      expect(ids).to.deep.equal([..."Hello world"].map((c) => c.charCodeAt(0)));
      const tok = await services.get<TokenizerService>("tokenizer");
      expect(await tok.decode(ids)).to.equal("Hello world");
    });

    it("rejects a duplicate name with ServiceExistsError naming service and namespace", async () => {
      await services.register("dup", CounterService);
      const err = await services.register("dup", CounterService).catch((e) => e);
      expect(err).to.be.instanceOf(ServiceExistsError);
      expect(err.message).to.contain('"dup"').and.contain(ns);
      expect(err.code).to.equal("SERVICE_EXISTS");
    });

    it("raises ServiceNotFoundError for a missing service, listing what is registered", async () => {
      await services.register("present", CounterService);
      const err = await services.get("missing").catch((e) => e);
      expect(err).to.be.instanceOf(ServiceNotFoundError);
      expect(err.message).to.contain('"missing"').and.contain("present").and.contain(ns);
      expect(err.details.registered).to.deep.equal(["present"]);
    });

    it("answers has() like Python's `in`", async () => {
      expect(await services.has("counter")).to.equal(false);
      await services.register("counter", CounterService);
      expect(await services.has("counter")).to.equal(true);
    });

    it("lists names sorted", async () => {
      for (const n of ["zeta", "alpha", "mid"]) await services.register(n, CounterService);
      expect(await services.list()).to.deep.equal(["alpha", "mid", "zeta"]);
    });

    it("makes services visible to another registry object of the same namespace", async () => {
      await services.register("shared_tokenizer", TokenizerService, { vocabSize: 50000 });
      const other = await open(ns);
      expect(await other.has("shared_tokenizer")).to.equal(true);
      const tok = await other.get<TokenizerService>("shared_tokenizer");
      expect(await tok.encode("Hi")).to.deep.equal([72, 105]);
    });

    it("isolates namespaces: same name, independent services", async () => {
      const evalNs = await open(uniqueNamespace());
      await services.register("tokenizer", TokenizerService, { vocabSize: 50000 });
      await evalNs.register("tokenizer", TokenizerService, { vocabSize: 30000 });
      expect(await (await services.get<TokenizerService>("tokenizer")).vocabSize()).to.equal(50000);
      expect(await (await evalNs.get<TokenizerService>("tokenizer")).vocabSize()).to.equal(30000);
    });

    it("reset() stops every actor and empties the namespace", async () => {
      const h = await services.register("a", CounterService);
      await services.register("b", CounterService);
      await services.reset();
      expect(await services.list()).to.deep.equal([]);
      const err = await h.increment().catch((e) => e);
      expect(err).to.be.instanceOf(ServiceNotFoundError);
    });

    it("reset() of one namespace leaves another intact", async () => {
      const other = await open(uniqueNamespace());
      await services.register("svc", CounterService);
      await other.register("svc", CounterService, 10);
      await services.reset();
      expect(await services.list()).to.deep.equal([]);
      expect(await other.list()).to.deep.equal(["svc"]);
      expect(await (await other.get<CounterService>("svc")).get_count()).to.equal(10);
    });

    it("registerWithOptions separates actor options from constructor arguments", async () => {
      const h = await services.registerWithOptions("slow", SlowService, { maxConcurrency: 3 });
      await Promise.all([h.sleep(50), h.sleep(50), h.sleep(50)]);
      expect((await h.stats()).maxRunning).to.equal(3);
      const c = await services.registerWithOptions("counter", CounterService, { maxConcurrency: 2, timeoutMs: 5_000 }, 41);
      expect(await c.increment()).to.equal(42);
      const rec = await services.describe("counter");
      expect(rec?.options.maxConcurrency).to.equal(2);
      expect(rec?.methods).to.include("increment");
    });

    it("rejects unknown actor options with a message that names the fix", async () => {
      const err = await services.registerWithOptions("x", CounterService, { maxConcurency: 2 } as never).catch((e) => e);
      expect(err).to.be.instanceOf(InvalidOptionsError);
      expect(err.message).to.contain("maxConcurency").and.contain("maxConcurrency");
      const err2 = await services.registerWithOptions("x", CounterService, { maxConcurrency: 0 }).catch((e) => e);
      expect(err2).to.be.instanceOf(InvalidOptionsError);
      expect(await services.has("x")).to.equal(false);
    });

    it("getOrRegister registers once and returns the existing service afterwards", async () => {
      const a = await services.getOrRegister("counter", CounterService, 5);
      await a.increment();
      const b = await services.getOrRegister("counter", CounterService, 100);
      expect(await b.get_count()).to.equal(6);
    });

    it("getOrRegister is race-free: concurrent callers share one instance", async () => {
      const others = await Promise.all([open(ns), open(ns), open(ns)]);
      const handles = await Promise.all([services, ...others].map((s) => s.getOrRegister("once", CounterService)));
      await Promise.all(handles.map((h) => h.increment()));
      expect(await handles[0]!.get_count()).to.equal(4);
    });

    it("shows one stateful service through two handles", async () => {
      await services.register("counter", CounterService);
      const h1 = await services.get<CounterService>("counter");
      const h2 = await (await open(ns)).get<CounterService>("counter");
      await h1.increment();
      await h2.increment();
      expect(await h1.get_count()).to.equal(2);
    });

    it("at() is a lazy handle resolved on the first call", async () => {
      const lazy = services.at<CounterService>("later");
      const err = await lazy.increment().catch((e) => e);
      expect(err).to.be.instanceOf(ServiceNotFoundError);
      await services.register("later", CounterService);
      expect(await lazy.increment()).to.equal(1);
    });

    it("watch() reports registrations and removals", async () => {
      const watch = services.watch();
      await watch.ready();
      const events: RegistryEvent[] = [];
      const done = (async () => {
        for await (const e of watch) events.push(e);
      })();
      await services.register("w1", CounterService);
      await services.remove("w1");
      await until(() => events.length >= 2, 5_000, "watch events");
      expect(events.map((e) => `${e.type}:${e.name}`)).to.deep.equal(["registered:w1", "removed:w1"]);
      expect(events[0]!.type === "registered" && events[0]!.record.className).to.equal("CounterService");
      await watch.close();
      await done;
    });

    it("watch({ includeExisting }) starts with the current services", async () => {
      await services.register("existing", CounterService);
      const watch = services.watch({ includeExisting: true });
      for await (const e of watch) {
        expect(e).to.include({ type: "registered", name: "existing" });
        break; // leaving the loop stops the watch
      }
    });

    it("validates namespace and service names", async () => {
      for (const bad of ["", "a.b", "a*", "a>", "has space", "x".repeat(200)]) {
        const e1 = await getServices({ backend, namespace: bad, servers: testUrl() }).catch((e) => e);
        expect(e1, `namespace ${JSON.stringify(bad)}`).to.be.instanceOf(InvalidNameError);
        const e2 = await services.register(bad, CounterService).catch((e) => e);
        expect(e2, `service ${JSON.stringify(bad)}`).to.be.instanceOf(InvalidNameError);
        expect(() => services.at(bad)).to.throw(InvalidNameError);
      }
    });

    it("a constructor that throws registers nothing", async () => {
      class Broken {
        constructor() {
          throw new Error("no model");
        }
      }
      const err = await services.register("broken", Broken).catch((e) => e);
      expect(err.message).to.equal("no model");
      expect(await services.has("broken")).to.equal(false);
      await services.register("broken", CounterService); // the name is free again
    });

    it("accepts factory functions, async ones included", async () => {
      await services.register("fn", async (start: number) => ({ value: () => start }), 7);
      expect(await (await services.get("fn")).value()).to.equal(7);
    });

    it("close() deregisters what this registry hosts", async () => {
      const other = await open(ns);
      await other.register("mine", CounterService);
      expect(await services.has("mine")).to.equal(true);
      await other.close();
      expect(await services.list()).to.deep.equal([]);
    });

    it("calls the instance's dispose hook when its actor stops", async () => {
      let disposed = 0;
      class Pool {
        ping() {
          return "pong";
        }
        async [Symbol.asyncDispose]() {
          disposed++;
        }
      }
      await services.register("pool", Pool);
      await services.reset();
      expect(disposed).to.equal(1);
    });
  });
}

describe("getServices options", () => {
  it("names the valid backends for an unknown one", async () => {
    const err = await getServices({ backend: "ray" as never }).catch((e) => e);
    expect(err).to.be.instanceOf(InvalidOptionsError);
    expect(err.message).to.contain('"nats"').and.contain('"local"');
  });
});
