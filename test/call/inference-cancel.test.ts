import { expect } from "chai";
import { connectBus, type BusConnection } from "../../src/connection/index.ts";
import { CancelledError } from "../../src/errors/index.ts";
import { InferenceServer, InProcessTransport, NatsTransport, type InferenceTransport } from "../../src/inference/index.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";

/** A model that records every input it saw, and takes `ms` per batch. */
function recordingModel(ms: number) {
  const seen: number[] = [];
  const model = async (batch: number[]) => {
    seen.push(...batch);
    await new Promise((r) => setTimeout(r, ms));
    return batch.map((x) => x * 10);
  };
  return { seen, model };
}

for (const kind of ["in-process", "nats"] as const) {
  describe(`cancelling inference requests (${kind})`, function () {
    this.timeout(30_000);
    let conn: BusConnection | undefined;
    let transport: InferenceTransport<number, number>;

    beforeEach(async () => {
      if (kind === "nats") {
        conn ??= await connectBus({ servers: testUrl() });
        transport = new NatsTransport<number, number>({ connection: conn, namespace: uniqueNamespace("infcancel"), name: "m" });
      } else transport = new InProcessTransport<number, number>();
    });
    after(() => conn?.close());

    it("a cancelled request is dropped from its batch: the model never sees it, the caller gets CancelledError at once", async () => {
      const { seen, model } = recordingModel(150);
      const server = new InferenceServer(model, transport, { maxBatchSize: 1, collate: (xs: number[]) => xs }).start();
      await server.ready();
      const client = server.client();
      const first = client.call(1); // occupies the model for 150 ms
      await until(() => seen.length === 1, 5_000, "the first batch");
      const ac = new AbortController();
      const second = client.call(2, { signal: ac.signal });
      const third = client.call(3);
      await new Promise((r) => setTimeout(r, 20)); // reach the server's queue
      const t0 = Date.now();
      ac.abort();
      expect(await second.catch((e) => e)).to.be.instanceOf(CancelledError);
      expect(Date.now() - t0).to.be.below(50);
      expect(await first).to.equal(10);
      expect(await third).to.equal(30);
      expect(seen).to.deep.equal([1, 3]);
      await server.shutdown();
    });
  });
}
