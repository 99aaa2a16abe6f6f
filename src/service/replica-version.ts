/**
 * Replica versions, the replica process's side (see versions.ts for the controller's): the
 * numeric `version` property of the instance is read once it is set up and after every call it
 * serves, and each change is reported.
 *
 * "After every call" without a hook in the actor host: each callable method of the instance gets
 * an own property that calls the original and reads the version when it returns or settles.
 * For a promise the read is attached when the method returns, before the host awaits it, so it
 * runs (and the report is sent) before the host sends the call's reply. A class without a
 * `version` property is left untouched and costs nothing.
 */
import { callableMethods } from "../actor/index.ts";

type Method = (...args: unknown[]) => unknown;

const read = (instance: object): number | null => {
  try {
    const v = (instance as { version?: unknown }).version;
    return typeof v === "number" && Number.isFinite(v) ? v : null;
  } catch {
    return null; // a getter that throws reports no version
  }
};

/**
 * Reports the instance's version now (when it has a `version` property) and after each call
 * that changes it. Returns false, having done nothing, for instances without one.
 */
export function reportVersions(instance: object, report: (version: number | null) => void): boolean {
  if (!("version" in instance)) return false;
  const send = (v: number | null) => {
    try {
      report(v);
    } catch {
      // Best effort (the connection may be closing): it must never fail the call it follows.
    }
  };
  let last = read(instance);
  send(last);
  const check = () => {
    const v = read(instance);
    if (v === last) return;
    last = v;
    send(v);
  };
  const afterSettle = () => check();
  for (const name of callableMethods(instance)) {
    const original = (instance as Record<string, Method>)[name]!;
    try {
      Object.defineProperty(instance, name, {
        configurable: true,
        writable: true,
        enumerable: false,
        value: function (this: unknown, ...args: unknown[]) {
          let out: unknown;
          try {
            out = original.apply(this, args);
          } catch (err) {
            check();
            throw err;
          }
          if (out instanceof Promise) out.then(afterSettle, afterSettle);
          else check();
          return out;
        },
      });
    } catch {
      // A frozen instance: its version is reported once, at start.
      return true;
    }
  }
  return true;
}
