import { expect } from "chai";
import { MAX_TIMER_MS } from "../../src/connection/index.ts";
import { InvalidOptionsError } from "../../src/errors/index.ts";
import {
  bool,
  custom,
  defineOptions,
  durationMs,
  fn,
  int,
  list,
  nested,
  nullable,
  num,
  obj,
  oneOf,
  oneOrMany,
  str,
  stringRecord,
  suggest,
  type Check,
} from "../../src/options/index.ts";

/** The InvalidOptionsError `f` throws (fails the test if it throws nothing or something else). */
function thrown(f: () => unknown): InvalidOptionsError {
  try {
    f();
  } catch (err) {
    expect(err).to.be.instanceOf(InvalidOptionsError);
    return err as InvalidOptionsError;
  }
  expect.fail("should have thrown");
}

const run = <T>(check: Check<T>, v: unknown) => check(v, "k", "w");

describe("options kit (pure)", () => {
  const parser = defineOptions(
    "demo options",
    {
      namespace: str({ nonEmpty: true }),
      timeoutMs: durationMs({ min: 1 }),
      retries: int({ min: 0, hint: "use 0 to never retry" }),
      mode: oneOf(["fast", "safe"]),
      label: str(),
    },
    { namespace: "default", timeoutMs: 30_000, retries: 3, mode: "safe" as const },
    { example: "{ retries: 2 }", unknownHint: "positional arguments go after the options" },
  );

  describe("defineOptions", () => {
    it("applies defaults, skips undefined values, keeps given ones", () => {
      expect(parser.parse(undefined)).to.deep.equal({ namespace: "default", timeoutMs: 30_000, retries: 3, mode: "safe" });
      expect(parser.parse({ namespace: undefined, retries: 0, label: undefined })).to.deep.equal({ namespace: "default", timeoutMs: 30_000, retries: 0, mode: "safe" });
      const r = parser.parse({ mode: "fast", label: "x" });
      expect(r.mode).to.equal("fast");
      expect(r.label).to.equal("x");
      // Resolved types: defaulted keys are never undefined, the others may be.
      const n: number = r.timeoutMs;
      const l: string | undefined = r.label;
      expect([n, l]).to.deep.equal([30_000, "x"]);
    });

    it("rejects unknown keys, listing the valid ones and suggesting the near-miss", () => {
      const e = thrown(() => parser.parse({ namspace: "x" }));
      expect(e.message).to.equal(
        'demo options: unknown option "namspace"; valid options are namespace, timeoutMs, retries, mode, label; did you mean "namespace"? (positional arguments go after the options)',
      );
      expect(e.details).to.deep.include({ option: "namspace", suggestion: "namespace" });
      expect(e.details.valid).to.deep.equal(["namespace", "timeoutMs", "retries", "mode", "label"]);
      // An unknown key is a typo even when its value is undefined.
      expect(thrown(() => parser.parse({ timeout: undefined })).message).to.contain('did you mean "timeoutMs"?');
      expect(thrown(() => parser.parse({ zzz: 1 })).message).to.not.contain("did you mean");
    });

    it("rejects options that are not an object, with an example", () => {
      for (const bad of [null, 5, "x", [1], () => {}]) {
        expect(thrown(() => parser.parse(bad)).message).to.match(/^demo options must be an object such as \{ retries: 2 \}/);
      }
    });

    it("names the option and the fix when a value is wrong, and honours a where override", () => {
      const e = thrown(() => parser.parse({ retries: -1 }, "retry(x) options"));
      expect(e.message).to.equal("retry(x) options: retries must be an integer >= 0 (got -1); use 0 to never retry");
      expect(e.details).to.deep.equal({ option: "retries" });
    });

    it("check() validates keys and given values without defaults; pick() keeps this entry's defined keys", () => {
      expect(() => parser.check({ retries: 1 })).to.not.throw();
      expect(() => parser.check({ retries: 1.5 })).to.throw(InvalidOptionsError, /retries must be an integer/);
      expect(() => parser.check({ retires: 1 })).to.throw(InvalidOptionsError, /did you mean "retries"/);
      expect(parser.pick({ retries: 1, label: undefined, other: 2 })).to.deep.equal({ retries: 1 });
    });

    it("computes function defaults at each parse, and refuses defaults for undeclared keys", () => {
      let n = 0;
      const p = defineOptions("c", { id: int({ min: 0 }) }, () => ({ id: n++ }));
      expect([p.parse({}).id, p.parse({}).id]).to.deep.equal([0, 1]);
      expect(() => defineOptions("bad", { a: int({ min: 0 }) }, { b: 1 } as never)).to.throw(Error, /undeclared option "b"/);
      const lazy = defineOptions("lazy", { a: int({ min: 0 }) }, () => ({ b: 1 }) as never);
      expect(() => lazy.parse({})).to.throw(Error, /undeclared option "b"/);
    });

    it("checks nested options with their own parser", () => {
      const tls = defineOptions("tls", { caFile: str({ nonEmpty: true }) });
      const p = defineOptions("conn options", { tls: nested(tls) });
      expect(p.parse({ tls: { caFile: "/ca.pem" } }).tls).to.deep.equal({ caFile: "/ca.pem" });
      expect(thrown(() => p.parse({ tls: { cafile: "/ca.pem" } })).message).to.match(/^conn options: tls: unknown option "cafile".*did you mean "caFile"/);
    });
  });

  describe("suggest", () => {
    it("finds case, spelling-style, prefix and small-edit near-misses", () => {
      const keys = ["namespace", "poolSize", "timeoutMs", "maxConcurrency", "hostId", "servers"];
      expect(suggest("namspace", keys)).to.equal("namespace");
      expect(suggest("pool_size", keys)).to.equal("poolSize");
      expect(suggest("hostID", keys)).to.equal("hostId");
      expect(suggest("timeout", keys)).to.equal("timeoutMs");
      expect(suggest("maxConcurency", keys)).to.equal("maxConcurrency");
      expect(suggest("server", keys)).to.equal("servers");
      expect(suggest("color", keys)).to.equal(undefined);
      expect(suggest("--timeout", ["--timeout-ms", "--namespace"])).to.equal("--timeout-ms");
    });
  });

  describe("durationMs", () => {
    const d = durationMs({ min: 1, hint: "the call's deadline" });

    it("accepts milliseconds in min..MAX_TIMER_MS, fractions included", () => {
      for (const v of [1, 1.5, 30_000, MAX_TIMER_MS]) expect(run(d, v)).to.equal(v);
    });

    it("rejects NaN, negatives, below min, Infinity, above the timer limit and non-numbers, naming the fix", () => {
      const cases: [unknown, RegExp][] = [
        [NaN, /\(got NaN\); NaN would never time out/],
        [-1, /\(got -1\); the call's deadline/],
        [0, /\(got 0\)/],
        [Infinity, /\(got Infinity\)/],
        [-Infinity, /\(got -Infinity\)/],
        [MAX_TIMER_MS + 1, /\(got 2147483648\); timers cannot wait longer/],
        ["5", /\(got "5"\); pass the number 5, not a string/],
        ["abc", /\(got "abc"\)/],
        [null, /\(got null\)/],
        [{}, /\(got an object\)/],
        [5n, /\(got 5n\)/],
      ];
      for (const [v, why] of cases) {
        const e = thrown(() => run(d, v));
        expect(e.message, String(v)).to.match(/^w: k must be a number of milliseconds in 1\.\.2147483647 /).and.match(why);
        expect(e.details).to.deep.equal({ option: "k" });
      }
    });

    it("accepts Infinity only where the option allows it", () => {
      const forever = durationMs({ allowInfinity: true });
      expect(run(forever, Infinity)).to.equal(Infinity);
      expect(run(forever, 0)).to.equal(0);
      expect(thrown(() => run(forever, NaN)).message).to.contain(", or Infinity");
      expect(thrown(() => run(forever, MAX_TIMER_MS + 1)).message).to.contain("use Infinity for no deadline");
    });
  });

  describe("checkers", () => {
    it("int and num", () => {
      expect(run(int({ min: 0 }), 3)).to.equal(3);
      for (const v of [1.5, -1, NaN, "3", Infinity]) expect(() => run(int({ min: 0 }), v), String(v)).to.throw(InvalidOptionsError, /k must be an integer >= 0/);
      expect(() => run(int({ min: 0, max: 5 }), 6)).to.throw(/integer >= 0 and <= 5/);
      expect(run(num({ min: 0 }), 0.5)).to.equal(0.5);
      for (const v of [-0.1, NaN, Infinity, "1"]) expect(() => run(num({ min: 0 }), v), String(v)).to.throw(InvalidOptionsError, /k must be a number >= 0/);
    });

    it("str, with secrets reported by type only", () => {
      expect(run(str(), "")).to.equal("");
      expect(() => run(str({ nonEmpty: true }), "")).to.throw(/non-empty string/);
      expect(() => run(str({ maxLength: 2 }), "abc")).to.throw(/at most 2 characters/);
      expect(() => run(str({ expected: 'an executable such as "python3"' }), 5)).to.throw(/k must be an executable such as "python3" \(got 5\)/);
      const e = thrown(() => run(str({ secret: true }), 12345));
      expect(e.message).to.contain("(got number)").and.not.contain("12345");
    });

    it("bool, oneOf, fn, obj", () => {
      expect(run(bool(), false)).to.equal(false);
      expect(() => run(bool(), "true")).to.throw(/k must be true or false \(got "true"\)/);
      const mode = oneOf(["a", "b", null]);
      expect(run(mode, null)).to.equal(null);
      const e = thrown(() => run(mode, "c"));
      expect(e.message).to.contain('k must be one of "a", "b", null (got "c")');
      expect(e.details.valid).to.deep.equal(["a", "b", null]);
      const f = () => 1;
      expect(run(fn(), f)).to.equal(f);
      expect(() => run(fn("it maps inputs"), 1)).to.throw(/k must be a function \(got 1\); it maps inputs/);
      const o = { warn() {} };
      expect(run(obj(undefined, ["warn"]), o)).to.equal(o);
      expect(() => run(obj(undefined, ["warn"]), { info() {} })).to.throw(/k must be an object with warn\(\)/);
      for (const v of [null, [], "x"]) expect(() => run(obj(), v)).to.throw(/k must be an object/);
    });

    it("stringRecord copies; list, oneOrMany, nullable and custom compose", () => {
      const src = { a: "1" };
      const copy = run(stringRecord(), src);
      expect(copy).to.deep.equal(src);
      expect(copy).to.not.equal(src);
      expect(thrown(() => run(stringRecord(), { a: 1 })).message).to.contain("k.a must be a string (got 1)");
      expect(run(list(str()), ["x"])).to.deep.equal(["x"]);
      expect(() => run(list(str()), ["x", 2])).to.throw(/k\[1\] must be a string/);
      expect(run(oneOrMany(str()), "x")).to.equal("x");
      expect(run(oneOrMany(str()), ["x", "y"])).to.deep.equal(["x", "y"]);
      expect(run(nullable(int({ min: 1 })), null)).to.equal(null);
      expect(() => run(nullable(int({ min: 1 })), 0)).to.throw(/integer >= 1/);
      const even = custom<number>((v) => typeof v === "number" && v % 2 === 0, "an even number", "use 2, 4, ...");
      expect(run(even, 4)).to.equal(4);
      expect(() => run(even, 3)).to.throw("w: k must be an even number (got 3); use 2, 4, ...");
    });
  });
});
