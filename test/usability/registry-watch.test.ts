import { expect } from "chai";
import { jetstreamManager } from "@nats-io/jetstream";
import { ClosedError, createLocalBus, getServices, type RegistryEvent, type Services } from "../../src/index.ts";
import { subjectsFor } from "../../src/subjects/index.ts";
import { CounterService } from "../fixtures/services.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";

for (const backend of ["nats", "local"] as const) {
  describe(`services.watch() is directly iterable (${backend})`, function () {
    this.timeout(20_000);
    let services: Services;
    const open = () =>
      backend === "nats"
        ? getServices({ backend, namespace: uniqueNamespace("watch"), servers: testUrl() })
        : getServices({ backend, namespace: uniqueNamespace("watch"), localBus: createLocalBus() });
    beforeEach(async () => {
      services = await open();
    });
    afterEach(async () => {
      await services.close();
    });

    it("for await over services.watch({ includeExisting: true }), then break", async () => {
      await services.register("a", CounterService);
      await services.register("b", CounterService);
      const seen: string[] = [];
      for await (const ev of services.watch({ includeExisting: true })) {
        seen.push(`${ev.type}:${ev.name}`);
        if (seen.length === 2) break;
      }
      expect(seen.sort()).to.deep.equal(["registered:a", "registered:b"]);
    });

    it("sees changes made after ready(), and close() ends a running iteration", async () => {
      const watch = services.watch();
      await watch.ready();
      const events: RegistryEvent[] = [];
      const done = (async () => {
        for await (const ev of watch) events.push(ev);
      })();
      await services.register("later", CounterService);
      await until(() => events.length === 1, 5_000, "the registration event");
      expect(events[0]).to.include({ type: "registered", name: "later" });
      await watch.close();
      await done;
      await watch.close(); // idempotent
    });

    it("close() before iterating: the iteration is empty; awaiting watch() still gives the watch", async () => {
      await services.register("x", CounterService);
      const watch = await services.watch({ includeExisting: true });
      await watch.close();
      await watch.close();
      const seen: RegistryEvent[] = [];
      for await (const ev of watch) seen.push(ev);
      expect(seen).to.deep.equal([]);
    });

    it("await using closes it", async () => {
      let iterating: Promise<void>;
      {
        await using watch = services.watch();
        await watch.ready();
        iterating = (async () => {
          for await (const _ of watch);
        })();
      }
      await iterating; // ends: disposal closed the watch
    });

    if (backend === "nats") {
      it("a watch that cannot start fails its iteration and ready(), not the call", async () => {
        const ns = uniqueNamespace("watch");
        const borrowed = await getServices({ backend, namespace: ns, servers: testUrl() });
        // The registry bucket gone under it: the KV watch cannot start.
        const jsm = await jetstreamManager(borrowed.connection.nc!);
        await jsm.streams.delete(`KV_${subjectsFor(ns).bucket}`);
        const watch = borrowed.watch();
        const fromReady = await watch.ready().then(() => undefined, (e) => e);
        expect(fromReady).to.be.instanceOf(Error);
        let fromLoop: unknown;
        try {
          for await (const _ of watch);
        } catch (err) {
          fromLoop = err;
        }
        expect(fromLoop).to.equal(fromReady);
        await watch.close();
        await borrowed.close();
      });
    }

    it("throws ClosedError on a closed registry", async () => {
      const other = await open();
      await other.close();
      expect(() => other.watch()).to.throw(ClosedError, /closed/);
    });
  });
}
