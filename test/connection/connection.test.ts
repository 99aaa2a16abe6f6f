import { expect } from "chai";
import { connectBus, createCodec, getServices, NoServerError } from "../../src/index.ts";
import { createDeadlines, freePort, resolveServers } from "../../src/connection/index.ts";

import { tcpReachable } from "../../src/connection/dev-server.ts";
import { until } from "../helpers/nats.ts";

describe("connection", function () {
  this.timeout(30_000);

  it("resolves servers from options, then NATS_URL, then the default", () => {
    expect(resolveServers({ servers: "nats://a:1,nats://b:2" }, {})).to.deep.equal({ servers: ["nats://a:1", "nats://b:2"], explicit: true });
    expect(resolveServers({}, { NATS_URL: "nats://c:3" })).to.deep.equal({ servers: ["nats://c:3"], explicit: true });
    expect(resolveServers({}, {})).to.deep.equal({ servers: ["nats://127.0.0.1:4222"], explicit: false });
  });

  it("fails with NoServerError that says how to get a server", async () => {
    const port = await freePort();
    const err = await connectBus({ servers: `nats://127.0.0.1:${port}`, connectTimeoutMs: 1_000, maxReconnectAttempts: 0 }).catch((e) => e);
    expect(err).to.be.instanceOf(NoServerError);
    expect(err.message).to.contain(`127.0.0.1:${port}`);
  });

  it("starts a private nats-server when asked (embedded default) and stops it on close", async () => {
    const saved = process.env.NATS_URL;
    delete process.env.NATS_URL;
    try {
      const services = await getServices({ namespace: "embedded", devServer: "always" });
      const url = services.connection.devServerUrl!;
      expect(url).to.match(/^nats:\/\/127\.0\.0\.1:\d+$/);
      expect(url).to.not.equal("nats://127.0.0.1:4222");
      await services.register("echo", class { echo(x: number) { return x; } });
      expect(await (await services.get("echo")).echo(3)).to.equal(3);
      await services.close();
      const port = Number(url.split(":").pop());
      await until(async () => !(await tcpReachable("127.0.0.1", port, 100)), 5_000, "dev server to stop");
    } finally {
      if (saved !== undefined) process.env.NATS_URL = saved;
    }
  });
});

describe("deadlines", () => {
  it("expires entries at their deadlines with one timer, across timeout groups", async () => {
    const expired: string[] = [];
    const d = createDeadlines<string>((k) => expired.push(k), 1);
    d.add("slow", 80);
    d.add("fast", 20);
    d.add("done", 20);
    d.delete("done", 20);
    await until(() => expired.length === 2, 2_000, "expiry");
    expect(expired).to.deep.equal(["fast", "slow"]);
    expect(d.size).to.equal(0);
    d.close();
  });
});

describe("codec", () => {
  const codec = createCodec();
  it("round-trips typed arrays from unaligned offsets", () => {
    const backing = new Float32Array([9, 1.5, 2.5, 9]);
    const view = new Float32Array(backing.buffer, 4, 2);
    const back = codec.decode<Float32Array>(codec.encode(view));
    expect(back).to.be.instanceOf(Float32Array).and.deep.equal(new Float32Array([1.5, 2.5]));
    expect(back.byteOffset % 4).to.equal(0);
  });
  it("round-trips many typed arrays in one message, nested in Maps and Sets, small and large", () => {
    // The encoder stages typed arrays in one buffer of its own: each must be copied out before the next.
    const big = Float64Array.from({ length: 20_000 }, (_, i) => i / 3); // larger than the stage
    const value = [
      new Float32Array([1, 2]),
      new Int16Array([-3]),
      new Map([["m", new Uint32Array([4, 5])]]),
      new Set([new Float32Array([6]), new Int8Array([7, 8])]),
      big,
      new Float32Array([9]),
    ];
    const bytes = codec.encode(value);
    const again = codec.encode([new Float32Array([42])]); // reuses the stage: the first result must not change
    expect(codec.decode(bytes)).to.deep.equal(value);
    expect(codec.decode(again)).to.deep.equal([new Float32Array([42])]);
  });
  it("drops undefined fields and keeps null", () => {
    expect(codec.decode(codec.encode({ a: undefined, b: null, c: [undefined] }))).to.deep.equal({ b: null, c: [null] });
  });
  it("explains what cannot be encoded", () => {
    expect(() => codec.encode({ f() {} })).to.throw(/functions cannot be sent/);
    const c: unknown[] = [];
    c.push(c);
    expect(() => codec.encode(c)).to.throw(/cyclic/);
  });
  it("rejects malformed input with CodecError", () => {
    expect(() => codec.decode(new Uint8Array([0xc1]))).to.throw(/cannot decode/);
  });
});


