import { expect } from "chai";
import { connectBus, type BusConnection } from "../../src/connection/index.ts";
import { InferenceServer, NatsTransport, type TensorRecord } from "../../src/inference/index.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";
import { doubling, obs } from "../inference/helpers.ts";

describe("InferenceServer.start() on NATS", function () {
  this.timeout(30_000);
  let conn: BusConnection;
  beforeEach(async () => {
    conn = await connectBus({ servers: testUrl() });
  });
  afterEach(async () => {
    await conn.close();
  });

  it("serves a client on the same connection that calls right after start(), without ready()", async () => {
    const ns = uniqueNamespace("start");
    for (let i = 0; i < 20; i++) {
      const name = `policy${i}`;
      const serverSide = new NatsTransport<TensorRecord, TensorRecord>({ connection: conn, namespace: ns, name });
      const clientSide = new NatsTransport<TensorRecord, TensorRecord>({ connection: conn, namespace: ns, name });
      const server = new InferenceServer(doubling, serverSide).start();
      try {
        const r = await clientSide.client().call(obs(i));
        expect(r.action, `round ${i}`).to.deep.equal(new Float32Array([2 * i]));
      } finally {
        await server.shutdown();
        await clientSide.close();
        await serverSide.close();
      }
    }
  });
});
