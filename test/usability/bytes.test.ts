import { expect } from "chai";
import { createLocalBus, getServices, type Services } from "../../src/index.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";

/** Reports what the method saw, and sends bytes back. */
class BytesService {
  seen(arg: Uint8Array) {
    return { plain: Object.getPrototypeOf(arg) === Uint8Array.prototype, isBuffer: typeof Buffer !== "undefined" && Buffer.isBuffer(arg), length: arg.length };
  }
  echo(arg: Uint8Array): Uint8Array {
    return arg;
  }
  reversed(arg: Uint8Array): Uint8Array {
    return Uint8Array.from(arg).reverse();
  }
  nested(arg: { bytes: Uint8Array[] }) {
    return { protos: arg.bytes.map((b) => Object.getPrototypeOf(b) === Uint8Array.prototype), back: arg.bytes };
  }
}

for (const backend of ["nats", "local"] as const) {
  describe(`Uint8Array in, plain Uint8Array out (${backend})`, function () {
    this.timeout(20_000);
    let services: Services;
    before(async () => {
      services =
        backend === "nats"
          ? await getServices({ backend, namespace: uniqueNamespace("bytes"), servers: testUrl() })
          : await getServices({ backend, namespace: uniqueNamespace("bytes"), localBus: createLocalBus() });
      await services.register("bytes", BytesService);
    });
    after(async () => {
      await services.close();
    });

    it("the method receives a plain Uint8Array, not a Buffer", async () => {
      const h = await services.get<BytesService>("bytes");
      expect(await h.seen(new Uint8Array([1, 2, 3]))).to.deep.equal({ plain: true, isBuffer: false, length: 3 });
      // A Buffer sent is bytes too, and arrives as plain bytes.
      expect(await h.seen(Buffer.from([4, 5]))).to.deep.equal({ plain: true, isBuffer: false, length: 2 });
    });

    it("the caller receives a plain Uint8Array with the same bytes", async () => {
      const h = await services.get<BytesService>("bytes");
      for (const out of [await h.echo(new Uint8Array([1, 2, 3])), await h.reversed(new Uint8Array([1, 2, 3]))]) {
        expect(Object.getPrototypeOf(out) === Uint8Array.prototype, "reply is a plain Uint8Array").to.equal(true);
        expect(Buffer.isBuffer(out)).to.equal(false);
      }
      expect([...(await h.reversed(new Uint8Array([1, 2, 3])))]).to.deep.equal([3, 2, 1]);
      const big = new Uint8Array(200_000).map((_, i) => i % 251);
      const back = await h.echo(big);
      expect(Object.getPrototypeOf(back) === Uint8Array.prototype, "large reply is a plain Uint8Array").to.equal(true);
      expect(back).to.deep.equal(big);
    });

    it("nested bytes are plain on both sides", async () => {
      const h = await services.get<BytesService>("bytes");
      const r = await h.nested({ bytes: [new Uint8Array([1]), new Uint8Array([2, 3])] });
      expect(r.protos).to.deep.equal([true, true]);
      expect(r.back.map((b) => Object.getPrototypeOf(b) === Uint8Array.prototype)).to.deep.equal([true, true]);
    });
  });
}
