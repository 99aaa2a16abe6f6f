import { expect } from "chai";
import {
  errorFromWire,
  errorToWire,
  InvalidOptionsError,
  LegacyServiceError,
  MethodNotFoundError,
  ServiceExistsError,
  ServiceNotFoundError,
} from "../../src/errors/index.ts";
import { getServices, type Backend, type Services } from "../../src/registry/index.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";

/** An object its owner runs and ends; every lifecycle hook counts its calls. */
class OwnedCounter {
  count = 0;
  readonly hooks = { shutdown: 0, close: 0, dispose: 0, asyncDispose: 0 };

  incr(by = 1): number {
    this.count += by;
    return this.count;
  }

  value(): number {
    return this.count;
  }

  async shutdown(): Promise<void> {
    this.hooks.shutdown++;
  }

  async close(): Promise<void> {
    this.hooks.close++;
  }

  dispose(): void {
    this.hooks.dispose++;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.hooks.asyncDispose++;
  }
}

const NO_HOOKS = { shutdown: 0, close: 0, dispose: 0, asyncDispose: 0 };

// TorchRL's registry: an already-running object can be registered without the registry owning it.
for (const backend of ["local", "nats"] as Backend[]) {
  describe(`registry owners vs clients: registerInstance / getClient (${backend} backend)`, () => {
    const opened: Services[] = [];
    const open = async (namespace: string) => {
      const s = await getServices({ backend, namespace, ...(backend === "nats" ? { servers: testUrl() } : {}) });
      opened.push(s);
      return s;
    };
    let ns: string;
    let owner: Services;
    let other: Services;
    beforeEach(async () => {
      ns = uniqueNamespace("own");
      owner = await open(ns);
      other = await open(ns);
    });
    afterEach(async () => {
      for (const s of opened.splice(0).reverse()) {
        await s.reset().catch(() => {});
        await s.close();
      }
    });

    it("serves the running object itself: remote calls change the owner's object; the record says 'instance'", async () => {
      const counter = new OwnedCounter();
      counter.count = 40;
      const h = await owner.registerInstance("counter", counter, { maxConcurrency: 2 });
      expect(await h.incr(1)).to.equal(41);
      const client = await other.getClient<OwnedCounter>("counter");
      expect(await client.incr(1)).to.equal(42);
      // @ts-expect-error a client's type has no lifecycle methods either
      void client.shutdown;
      expect(counter.count).to.equal(42);
      const record = await other.describe("counter");
      expect(record?.registration).to.equal("instance");
      expect(record?.className).to.equal("OwnedCounter");
      expect(record?.methods).to.deep.equal(["incr", "value"]);
      expect(record?.options.maxConcurrency).to.equal(2);
      expect((await other.describe("counter"))?.kind).to.equal("actor");
    });

    it("remove() stops serving it but never ends it; the owner keeps using it, and may register it again", async () => {
      const counter = new OwnedCounter();
      const h = await owner.registerInstance("counter", counter);
      await h.incr(5);
      expect(await other.remove("counter")).to.equal(true);
      expect(await other.has("counter")).to.equal(false);
      expect(counter.hooks).to.deep.equal(NO_HOOKS);
      expect(counter.count).to.equal(5);
      expect(counter.incr(1)).to.equal(6); // still usable locally
      const again = await owner.registerInstance("counter", counter);
      expect(await again.value()).to.equal(6);
    });

    it("reset() from another registry and close() of the owner's registry never end it", async () => {
      const a = new OwnedCounter();
      const b = new OwnedCounter();
      await (await owner.registerInstance("a", a)).incr(3);
      await owner.registerInstance("b", b);
      await other.reset();
      expect(await other.list()).to.deep.equal([]);
      expect(a.hooks).to.deep.equal(NO_HOOKS);
      expect(a.count).to.equal(3);

      await owner.registerInstance("b2", b);
      await (await other.getClient<OwnedCounter>("b2")).incr(7);
      await owner.close();
      expect(b.hooks).to.deep.equal(NO_HOOKS);
      expect(b.count).to.equal(7);
      expect(b.incr(1)).to.equal(8);
      expect(await other.has("b2")).to.equal(false);
    });

    it("remote callers cannot call its lifecycle methods (shutdown, close, dispose): MethodNotFoundError", async () => {
      const counter = new OwnedCounter();
      await owner.registerInstance("counter", counter);
      const raw = (await other.get("counter")) as unknown as Record<string, () => Promise<unknown>>;
      for (const method of ["shutdown", "close", "dispose"]) {
        const err = await raw[method]!().catch((e: unknown) => e);
        expect(err, method).to.be.instanceOf(MethodNotFoundError);
        expect((err as Error).message).to.contain(`${method}()`).and.contain("registerInstance");
        expect((err as MethodNotFoundError).details.methods).to.deep.equal(["incr", "value"]);
      }
      expect(counter.hooks).to.deep.equal(NO_HOOKS);
      expect(await raw.value!()).to.equal(0); // the service still works
    });

    it("getClient(): a handle for registerInstance services; LegacyServiceError for class/factory registrations; ServiceNotFoundError if absent", async () => {
      await owner.registerInstance("owned", new OwnedCounter());
      await owner.register("from_class", OwnedCounter);
      await owner.register("from_factory", () => new OwnedCounter());
      expect(await (await other.getClient<OwnedCounter>("owned")).incr(2)).to.equal(2);

      for (const name of ["from_class", "from_factory"]) {
        const err = await other.getClient(name).catch((e: unknown) => e);
        expect(err, name).to.be.instanceOf(LegacyServiceError);
        expect((err as LegacyServiceError).code).to.equal("LEGACY_SERVICE");
        expect((err as Error).message).to.contain("legacy raw actor").and.contain(`get("${name}")`).and.contain("registerInstance");
        expect((await other.describe(name))?.registration).to.equal("factory");
        // get() still serves them.
        expect(await (await other.get<OwnedCounter>(name)).incr(1)).to.equal(1);
      }

      const missing = await other.getClient("nope").catch((e: unknown) => e);
      expect(missing).to.be.instanceOf(ServiceNotFoundError);
      expect((missing as Error).message).to.contain('"nope"');
    });

    it("a factory that constructs a new object keeps owned semantics: remove() disposes it", async () => {
      let made: OwnedCounter | undefined;
      await owner.register("made", () => (made = new OwnedCounter()));
      await other.remove("made");
      // The host disposes through the first hook it finds: Symbol.asyncDispose.
      expect(made!.hooks.asyncDispose).to.equal(1);
    });

    it("refuses what is not a running object, and a taken name", async () => {
      await owner.registerInstance("taken", new OwnedCounter());
      expect(await owner.registerInstance("taken", new OwnedCounter()).catch((e: unknown) => e)).to.be.instanceOf(ServiceExistsError);
      const cls = await owner.registerInstance("c", OwnedCounter as unknown as object).catch((e: unknown) => e);
      expect(cls).to.be.instanceOf(InvalidOptionsError);
      expect((cls as Error).message).to.contain('register("c", Class');
      const promise = await owner.registerInstance("p", Promise.resolve(new OwnedCounter())).catch((e: unknown) => e);
      expect((promise as Error).message).to.contain("await the object first");
      expect(await owner.registerInstance("n", null as unknown as object).catch((e: unknown) => e)).to.be.instanceOf(InvalidOptionsError);
    });
  });
}

describe("LegacyServiceError on the wire", () => {
  it("is rebuilt as its own class", () => {
    const back = errorFromWire(errorToWire(new LegacyServiceError("legacy raw actor", { details: { service: "x" } })));
    expect(back).to.be.instanceOf(LegacyServiceError);
    expect(back.code).to.equal("LEGACY_SERVICE");
    expect(back.details).to.deep.equal({ service: "x" });
  });
});
