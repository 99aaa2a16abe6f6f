import { existsSync } from "node:fs";
import { expect } from "chai";
import { InferenceServer, InProcessTransport } from "../../src/inference/index.ts";
import { createMetrics, watchInference } from "../../src/metrics/index.ts";
import { getServices } from "../../src/registry/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { PROMTOOL, parseExposition, promtoolCheck, valueOf } from "./exposition.ts";

describe("metrics: inference batches and queue, registry watch lag", function () {
  this.timeout(30_000);

  it("exports an inference server's batch sizes and model times as histograms, and its queue depth", async () => {
    const metrics = await createMetrics();
    let release!: () => void;
    let held = new Promise<void>((r) => (release = r));
    let calls = 0;
    const server = new InferenceServer(
      async (xs: number[]) => {
        calls++;
        await held;
        return xs.map((x) => x + 1);
      },
      new InProcessTransport<number, number>(),
      { collate: (items) => items, maxBatchSize: 8, timeoutMs: 1 },
    ).start();
    const stop = watchInference(metrics, "policy", server);
    try {
      const [client] = server.clients(1);
      // One request holds the model; the next five queue behind it.
      const first = client!.call(0);
      await until(() => calls === 1, 5_000, "the first batch to reach the model");
      const queued = Array.from({ length: 5 }, (_, i) => client!.call(i + 1));
      await until(async () => valueOf(await metrics.expose(), "actorbus_inference_queue_depth", { server: "policy" }) === 5, 5_000, "five queued requests");
      expect(server.stats().queued).to.equal(5);
      release();
      expect(await first).to.equal(1);
      expect(await Promise.all(queued)).to.deep.equal([2, 3, 4, 5, 6]);
      held = Promise.resolve();

      const text = await metrics.expose();
      const batches = server.stats().batches;
      expect(batches).to.equal(2); // [0], then [1..5] together
      expect(valueOf(text, "actorbus_inference_batch_size_count", { server: "policy" })).to.equal(2);
      expect(valueOf(text, "actorbus_inference_batch_size_sum", { server: "policy" })).to.equal(6);
      expect(valueOf(text, "actorbus_inference_batch_size_bucket", { server: "policy", le: "1" })).to.equal(1);
      expect(valueOf(text, "actorbus_inference_batch_size_bucket", { server: "policy", le: "4" })).to.equal(1);
      expect(valueOf(text, "actorbus_inference_batch_size_bucket", { server: "policy", le: "8" })).to.equal(2);
      expect(valueOf(text, "actorbus_inference_model_duration_seconds_count", { server: "policy" })).to.equal(2);
      expect(valueOf(text, "actorbus_inference_model_duration_seconds_sum", { server: "policy" })).to.be.greaterThan(0);
      expect(valueOf(text, "actorbus_inference_queue_depth", { server: "policy" })).to.equal(0);
      // Histograms are cumulative: stats({ reset }) restarts the windows, not them.
      server.stats({ reset: true });
      expect(server.histograms().batchSize.count).to.equal(2);
      if (existsSync(PROMTOOL)) {
        const check = promtoolCheck(text);
        expect(check.status, check.output).to.equal(0);
      }
    } finally {
      stop();
      await server.shutdown();
    }
    expect(parseExposition(await metrics.expose()).filter((l) => l.name.startsWith("actorbus_inference"))).to.deep.equal([]);
  });

  for (const backend of ["nats", "local"] as const) {
    it(`records how late a registry watch sees live changes (${backend}), one series per namespace`, async () => {
      const metrics = await createMetrics();
      const namespace = uniqueNamespace("lag");
      const opts = backend === "nats" ? { namespace, servers: testUrl(), metrics } : { namespace, backend, metrics };
      const a = await getServices(opts);
      const b = backend === "nats" ? await getServices(opts) : await getServices({ ...opts, connection: a.connection });
      try {
        await a.register("before", class {});
        const watch = b.watch({ includeExisting: true });
        await watch.ready();
        const seen: string[] = [];
        const reading = (async () => {
          for await (const ev of watch) {
            seen.push(`${ev.type} ${ev.name}`);
            if (seen.length === 3) break;
          }
        })();
        await a.register("after", class {});
        await a.remove("after");
        await reading;
        expect(seen).to.deep.equal(["registered before", "registered after", "removed after"]);
        const text = await metrics.expose();
        // The replayed "before" is old, not late: only the two live changes count.
        expect(valueOf(text, "actorbus_registry_watch_lag_seconds_count", { namespace })).to.equal(2);
        expect(valueOf(text, "actorbus_registry_watch_lag_seconds_sum", { namespace })).to.be.below(1);
        expect(valueOf(text, "actorbus_registry_watch_lag_seconds_bucket", { namespace, le: "+Inf" })).to.equal(2);
        if (existsSync(PROMTOOL)) {
          const check = promtoolCheck(text);
          expect(check.status, check.output).to.equal(0);
        }
      } finally {
        await b.close();
        await a.close();
      }
    });
  }
});
