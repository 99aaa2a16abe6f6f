const NOTHING: ReadonlySet<string> = new Set();

/**
 * Lifecycle methods of an object registered with registerInstance(): its owner ends it, so no
 * remote caller may (Symbol.asyncDispose cannot be named by a call at all).
 */
export const OWNER_LIFECYCLE_METHODS: ReadonlySet<string> = new Set(["shutdown", "close", "dispose"]);

/**
 * The remotely callable methods of an instance: functions on it or its prototype chain below
 * Object.prototype, except the constructor, names starting with "_" (private by convention) and
 * the lifecycle method close(): the host calls it when the actor stops, and one remote caller
 * must not be able to close a shared service (a Python pool) for everyone.
 * Computed once per instance, so a call never reaches toString, __proto__ and the like.
 */
export function callableMethods(instance: object, exclude: ReadonlySet<string> = NOTHING): Set<string> {
  const names = new Set<string>();
  for (let o: object | null = instance; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const name of Object.getOwnPropertyNames(o)) {
      if (name === "constructor" || name === "close" || name.startsWith("_") || exclude.has(name)) continue;
      const d = Object.getOwnPropertyDescriptor(o, name);
      if (d && typeof d.value === "function") names.add(name);
    }
  }
  return names;
}

/** Methods a class declares, for the registry record (without constructing it). */
export function declaredMethods(factory: unknown): string[] {
  const proto = (factory as { prototype?: object })?.prototype;
  return proto ? [...callableMethods(proto)].sort() : [];
}

/** Classes are constructed with `new`; plain and async functions are called and awaited. */
export async function instantiate(factory: unknown, args: unknown[]): Promise<object> {
  if (typeof factory !== "function") throw new TypeError("a service factory must be a class or a function returning an object");
  const src = Function.prototype.toString.call(factory);
  const constructible = /^class[\s{]/.test(src) || (factory.prototype !== undefined && !/^async/.test(src));
  const made = constructible ? Reflect.construct(factory, args) : await (factory as (...a: unknown[]) => unknown)(...args);
  if (made === null || typeof made !== "object") throw new TypeError("the service factory returned no object");
  return made as object;
}
