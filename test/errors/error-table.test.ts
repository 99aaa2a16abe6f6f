import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as api from "../../src/index.ts";
import { ActorBusError, errorFromWire, errorToWire, RemoteError, ServiceUnavailableError, type WireError } from "../../src/errors/index.ts";

const REBUILD = fileURLToPath(new URL("../fixtures/rebuild-errors.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

const exportedClasses = Object.entries(api).filter(
  (e): e is [string, typeof ActorBusError] => typeof e[1] === "function" && (e[1] === ActorBusError || e[1].prototype instanceof ActorBusError),
);

/** The fields a rebuild must keep, all the way down the causes (stacks are the rebuilder's own). */
function comparable(w: WireError | undefined): unknown {
  if (!w) return undefined;
  const { stack: _stack, cause, details, ...rest } = w;
  const { remoteStack: _remoteStack, ...kept } = details ?? {};
  return { ...rest, details: kept, cause: comparable(cause) };
}

function sample(cls: typeof ActorBusError): ActorBusError {
  const root = new TypeError("the root cause");
  const cause = new ServiceUnavailableError("nobody listened", { cause: root, details: { subject: "ab.t.svc" } });
  return new cls(`a ${cls.name} for the table`, { cause, details: { service: "svc", attempts: 3, nested: { ok: true, list: [1, "two"] } } });
}

describe("error classes: one table, no import side effects", () => {
  it("finds the library's error classes among the package's exports", () => {
    const names = exportedClasses.map(([n]) => n);
    expect(names).to.include.members(["ActorBusError", "CancelledError", "SessionLostError", "RouterError", "InterpreterStartError", "WeightSyncError", "InferenceShutdownError"]);
  });

  it("rebuilds every exported error class as itself, with code, retryable, details and cause, in a process that imported only src/errors", function () {
    this.timeout(60_000);
    const input = exportedClasses.map(([name, cls]) => ({ name, wire: errorToWire(sample(cls)) }));
    const r = spawnSync(process.execPath, ["--import", "tsx", REBUILD], { cwd: ROOT, input: JSON.stringify(input), encoding: "utf8", timeout: 50_000 });
    expect(r.status, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout) as { name: string; sameClass: boolean; className: string; instanceOfBase: boolean; causeClass: string; rootCauseClass: string; wire: WireError }[];
    expect(out.map((o) => o.name)).to.deep.equal(input.map((i) => i.name));
    for (const [i, o] of out.entries()) {
      const sent = input[i]!.wire;
      expect(o, o.name).to.include({ sameClass: true, className: o.name, instanceOfBase: true, causeClass: "ServiceUnavailableError", rootCauseClass: "RemoteError" });
      expect(comparable(o.wire), o.name).to.deep.equal(comparable(sent));
      expect(o.wire.code, o.name).to.equal(new (api as unknown as Record<string, typeof ActorBusError>)[o.name]!("").code);
      expect(o.wire.cause?.cause?.details?.remoteName, o.name).to.equal("TypeError");
    }
  });

  it("keeps the cause chain bounded: an error that is its own cause still crosses", () => {
    const e = new ActorBusError("loops");
    Object.defineProperty(e, "cause", { value: e, configurable: true, writable: true, enumerable: false });
    let depth = 0;
    for (let w: WireError | undefined = errorToWire(e); w; w = w.cause) depth++;
    expect(depth).to.be.within(2, 16);
    const back = errorFromWire(errorToWire(e));
    expect(back).to.be.instanceOf(ActorBusError);
    expect(back.cause).to.be.instanceOf(ActorBusError);
  });

  it("caps the text of causes, which may quote a whole hostile input, so a reply stays small", () => {
    const huge = "x".repeat(1_000_000);
    const w = errorToWire(new ActorBusError("cannot decode", { cause: new SyntaxError(`Cannot convert ${huge} to a BigInt`) }));
    expect(JSON.stringify(w).length).to.be.below(20_000);
    expect(w.cause!.message).to.match(/^Cannot convert x+\.\.\. \(\d+ more characters\)$/);
  });

  it("a cause that is not an Error arrives as a RemoteError saying what it was", () => {
    const back = errorFromWire(errorToWire(new ServiceUnavailableError("down", { cause: "socket closed" })));
    expect(back.cause).to.be.instanceOf(RemoteError);
    expect((back.cause as RemoteError).message).to.equal("socket closed");
    expect((back.cause as RemoteError).remoteName).to.equal("string");
  });

  it("leaves behind a cause whose getter throws: the error itself still crosses", () => {
    const e = new TypeError("thrown by user code");
    Object.defineProperty(e, "cause", { get: () => { throw new Error("no"); } });
    const back = errorFromWire(errorToWire(e));
    expect(back).to.be.instanceOf(RemoteError);
    expect(back.message).to.equal("thrown by user code");
    expect(back.cause).to.equal(undefined);
  });

  it("ignores a hostile cause on the wire", () => {
    const back = errorFromWire({ code: "CANCELLED", name: "CancelledError", message: "x", retryable: false, cause: 42 as unknown as WireError });
    expect(back).to.be.instanceOf(api.CancelledError);
    expect(back.cause).to.equal(undefined);
  });
});
