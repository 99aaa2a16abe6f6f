/**
 * The one options kit of every public entry (nats.js style: defaults + parser). An entry declares
 * its keys once, each with a checker, and its defaults; resolving then skips `undefined` values,
 * rejects unknown keys (listing the valid ones, with a "did you mean" for near-misses), rejects
 * non-object options, and runs each checker. Messages say what to pass instead.
 */
import { MAX_TIMER_MS } from "../connection/deadlines.ts";
import { InvalidOptionsError } from "../errors/index.ts";

/**
 * Checks one value and returns it (possibly normalised, e.g. a copied record). Any function of
 * this shape is a checker, so an entry can write its own for rules the kit does not cover.
 */
export type Check<T> = (value: unknown, key: string, where: string) => T;
export type Spec = Record<string, Check<unknown>>;
export type Checked<C> = C extends Check<infer T> ? T : never;

/**
 * For `spec satisfies SpecFor<XOptions>`: the spec covers exactly the keys of the options
 * interface, so a key added to one and not the other fails to compile. (Checkers may normalise,
 * e.g. `sandbox: false` -> a resolved sandbox, so their output types are not tied to it.)
 */
export type SpecFor<O> = { [K in keyof O]-?: Check<unknown> };

/** Keys with a default are always present; the others only when the caller gave a value. */
export type Resolved<S extends Spec, D> = { [K in keyof S]: K extends keyof D ? Checked<S[K]> : Checked<S[K]> | undefined };

type Defaults<S extends Spec> = { [K in keyof S]?: Checked<S[K]> };

export interface OptionsParser<S extends Spec, D extends Defaults<S>> {
  /** Names the entry in messages, e.g. "getServices options". */
  readonly where: string;
  readonly keys: readonly (keyof S & string)[];
  readonly spec: S;
  /** A fresh copy of the defaults (computed ones are computed now). */
  defaults(): D;
  /** Defaults, then the caller's defined values, each checked. `where` overrides the entry's name. */
  parse(options: unknown, where?: string): Resolved<S, D>;
  /** Keys and the given values only, no defaults: for partial options merged and parsed later. */
  check(options: unknown, where?: string): void;
  /** The defined values of this entry's keys, for handing a wider options object to this entry. */
  pick<O extends object>(options: O | undefined): Partial<Pick<O, Extract<keyof O, keyof S>>>;
}

const hasOwn = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

export interface EntryInfo {
  /** Shown by "must be an object such as ...". */
  example?: string;
  /** Appended to the unknown-option message, e.g. where misplaced values belong instead. */
  unknownHint?: string;
}

/**
 * Declares an entry's options. `defaults` may be a function (called at each parse) for values
 * such as the hostname or the core count.
 */
export function defineOptions<S extends Spec, D extends Defaults<S> = {}>(
  where: string,
  spec: S,
  defaults?: D | (() => D),
  { example = "{}", unknownHint }: EntryInfo = {},
): OptionsParser<S, D> {
  const keys = Object.keys(spec) as (keyof S & string)[];
  const known = new Set<string>(keys);
  const verify = (d: D): D => {
    // A programming error in the declaration, not a caller's: fail loudly.
    for (const k of Object.keys(d)) if (!known.has(k)) throw new Error(`${where}: default for undeclared option "${k}"`);
    return d;
  };
  // Computed defaults (hostname, core count) are computed at parse time only, never at import.
  let verified = typeof defaults !== "function";
  if (verified) verify({ ...(defaults as D | undefined) } as D);
  const makeDefaults = (): D => {
    if (typeof defaults !== "function") return { ...(defaults ?? ({} as D)) };
    const d = (defaults as () => D)();
    if (!verified) {
      verify(d);
      verified = true;
    }
    return d;
  };

  const asObject = (options: unknown, w: string): Record<string, unknown> => {
    if (options === undefined) return {};
    if (options === null || typeof options !== "object" || Array.isArray(options)) {
      throw new InvalidOptionsError(`${w} must be an object such as ${example} (got ${show(options)})`);
    }
    const o = options as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!known.has(k)) throw unknownOption(w, k, keys, unknownHint);
    return o;
  };

  return {
    where,
    keys,
    spec,
    defaults: makeDefaults,
    parse(options, w = where) {
      const o = asObject(options, w);
      const merged: Record<string, unknown> = makeDefaults();
      for (const k of keys) if (hasOwn(o, k) && o[k] !== undefined) merged[k] = o[k];
      const out: Record<string, unknown> = {};
      for (const k of keys) {
        const v = merged[k];
        if (v !== undefined) out[k] = spec[k]!(v, k, w);
      }
      return out as Resolved<S, D>;
    },
    check(options, w = where) {
      const o = asObject(options, w);
      for (const k of keys) if (hasOwn(o, k) && o[k] !== undefined) spec[k]!(o[k], k, w);
    },
    pick<O extends object>(options: O | undefined) {
      const out: Record<string, unknown> = {};
      if (options) for (const k of keys) if ((options as Record<string, unknown>)[k] !== undefined) out[k] = (options as Record<string, unknown>)[k];
      return out as Partial<Pick<O, Extract<keyof O, keyof S>>>;
    },
  };
}

// ---------------------------------------------------------------- messages

/** A value fit for a message: strings quoted and cut short, objects by kind, never their contents. */
export function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === "function") return "a function";
  if (Array.isArray(v)) return "an array";
  if (v !== null && typeof v === "object") return "an object";
  if (typeof v === "bigint") return `${v}n`;
  return String(v);
}

export function fail(where: string, key: string, expected: string, v: unknown, hint?: string, details?: Record<string, unknown>): InvalidOptionsError {
  return failShown(where, key, expected, show(v), hint, details);
}

function failShown(where: string, key: string, expected: string, shown: string, hint?: string, details?: Record<string, unknown>): InvalidOptionsError {
  return new InvalidOptionsError(`${where}: ${key} must be ${expected} (got ${shown})${hint ? `; ${hint}` : ""}`, { details: { option: key, ...details } });
}

function unknownOption(where: string, key: string, valid: readonly string[], hint: string | undefined): InvalidOptionsError {
  const guess = suggest(key, valid);
  return new InvalidOptionsError(
    `${where}: unknown option "${key}"; valid options are ${valid.join(", ")}${guess ? `; did you mean "${guess}"?` : ""}${hint ? ` (${hint})` : ""}`,
    { details: { option: key, valid: [...valid], ...(guess ? { suggestion: guess } : {}) } },
  );
}

/**
 * The candidate a typo most likely meant: the same word in another case or spelling style
 * (pool_size, poolsize -> poolSize), else one word the other starts with (timeout -> timeoutMs),
 * else the nearest within two edits (one for words under 8 letters), else undefined.
 */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_\s]/g, "");
  const w = norm(word);
  const same = candidates.find((c) => norm(c) === w);
  if (same) return same;
  if (w.length >= 4) {
    const prefixed = candidates.filter((c) => norm(c).startsWith(w) || w.startsWith(norm(c)));
    if (prefixed.length === 1) return prefixed[0];
  }
  const limit = Math.min(2, Math.max(1, Math.floor(w.length / 4)));
  let best: string | undefined;
  let bestD = limit + 1;
  for (const c of candidates) {
    const d = editDistance(w, norm(c));
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best;
}

/** Damerau-Levenshtein (adjacent transpositions count as one edit). */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return Infinity;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

// ---------------------------------------------------------------- checkers

export interface IntOptions {
  min: number;
  max?: number;
  hint?: string;
}

export function int({ min, max, hint }: IntOptions): Check<number> {
  return (v, key, where) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || (max !== undefined && v > max)) {
      throw fail(where, key, `an integer >= ${min}${max !== undefined ? ` and <= ${max}` : ""}`, v, hint);
    }
    return v;
  };
}

/** A finite number (fractions allowed), e.g. resource hints such as numCpus: 0.5. */
export function num({ min, max, hint }: IntOptions): Check<number> {
  return (v, key, where) => {
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || (max !== undefined && v > max)) {
      throw fail(where, key, `a number >= ${min}${max !== undefined ? ` and <= ${max}` : ""}`, v, hint);
    }
    return v;
  };
}

export interface DurationOptions {
  /** Smallest accepted value. Default 0. */
  min?: number;
  /**
   * Accept Infinity ("no deadline"). The entry must then keep Infinity away from timers itself:
   * setTimeout would fire at once.
   */
  allowInfinity?: boolean;
  hint?: string;
}

/**
 * A duration in milliseconds that can reach a timer: a number in min..MAX_TIMER_MS. NaN, Infinity
 * and larger values would make setTimeout fire at once (or a deadline never count), so a call
 * given one could outlive any deadline; they are refused here, at the entry.
 */
export function durationMs({ min = 0, allowInfinity = false, hint }: DurationOptions = {}): Check<number> {
  const expected = `a number of milliseconds in ${min}..${MAX_TIMER_MS}${allowInfinity ? ", or Infinity" : ""}`;
  return (v, key, where) => {
    if (typeof v === "number" && ((v >= min && v <= MAX_TIMER_MS) || (allowInfinity && v === Infinity))) return v;
    let why = hint;
    if (typeof v === "string" && v.trim() !== "" && Number.isFinite(Number(v))) why = `pass the number ${Number(v)}, not a string`;
    else if (typeof v === "number" && Number.isNaN(v)) why = `NaN would never time out${hint ? `; ${hint}` : ""}`;
    else if (typeof v === "number" && v > MAX_TIMER_MS) why = `timers cannot wait longer (about 24.8 days)${allowInfinity ? "; use Infinity for no deadline" : ""}`;
    throw fail(where, key, expected, v, why);
  };
}

export interface StrOptions {
  nonEmpty?: boolean;
  maxLength?: number;
  /** Say what was expected instead of "a string", e.g. "an executable name or path such as \"python3\"". */
  expected?: string;
  hint?: string;
  /** Secrets (passwords, tokens): the message names only the type of a wrong value. */
  secret?: boolean;
}

export function str({ nonEmpty = false, maxLength, expected, hint, secret = false }: StrOptions = {}): Check<string> {
  const what = expected ?? `a ${nonEmpty ? "non-empty " : ""}string${maxLength !== undefined ? ` of at most ${maxLength} characters` : ""}`;
  return (v, key, where) => {
    if (typeof v !== "string" || (nonEmpty && v.length === 0) || (maxLength !== undefined && v.length > maxLength)) {
      throw secret ? failShown(where, key, what, typeof v === "string" ? "a string" : typeof v, hint) : fail(where, key, what, v, hint);
    }
    return v;
  };
}

export function bool(hint?: string): Check<boolean> {
  return (v, key, where) => {
    if (typeof v !== "boolean") throw fail(where, key, "true or false", v, hint);
    return v;
  };
}

type Literal = string | number | boolean | null;

export function oneOf<const L extends readonly Literal[]>(values: L, hint?: string): Check<L[number]> {
  const list = values.map((x) => (typeof x === "string" ? `"${x}"` : String(x))).join(", ");
  return (v, key, where) => {
    if (!values.includes(v as Literal)) throw fail(where, key, `one of ${list}`, v, hint, { valid: [...values] });
    return v as L[number];
  };
}

export function fn<F extends (...args: any[]) => unknown = (...args: any[]) => unknown>(hint?: string): Check<F> {
  return (v, key, where) => {
    if (typeof v !== "function") throw fail(where, key, "a function", v, hint);
    return v as F;
  };
}

/** Any non-null, non-array object (optionally with these methods), passed through as is. */
export function obj<T extends object = object>(hint?: string, methods: readonly string[] = []): Check<T> {
  const expected = methods.length ? `an object with ${methods.map((m) => `${m}()`).join(", ")}` : "an object";
  return (v, key, where) => {
    if (v === null || typeof v !== "object" || Array.isArray(v) || methods.some((m) => typeof (v as Record<string, unknown>)[m] !== "function")) {
      throw fail(where, key, expected, v, hint);
    }
    return v as T;
  };
}

/** A plain map of strings (metadata, env); returns a copy, so later edits by the caller do not leak in. */
export function stringRecord(hint?: string): Check<Record<string, string>> {
  return (v, key, where) => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw fail(where, key, "an object mapping names to strings", v, hint);
    const out: Record<string, string> = {};
    for (const [k, x] of Object.entries(v)) {
      if (typeof x !== "string") throw fail(where, `${key}.${k}`, "a string", x, hint, { option: key });
      out[k] = x;
    }
    return out;
  };
}

/** An array whose items pass `item`; returns a copy. */
export function list<T>(item: Check<T>, hint?: string): Check<T[]> {
  return (v, key, where) => {
    if (!Array.isArray(v)) throw fail(where, key, "an array", v, hint);
    return v.map((x, i) => item(x, `${key}[${i}]`, where));
  };
}

/** One value or an array of them, e.g. `servers`. */
export function oneOrMany<T>(item: Check<T>, hint?: string): Check<T | T[]> {
  const many = list(item, hint);
  return (v, key, where) => (Array.isArray(v) ? many(v, key, where) : item(v, key, where));
}

export function nullable<T>(check: Check<T>): Check<T | null> {
  return (v, key, where) => (v === null ? null : check(v, key, where));
}

/** A rule the other checkers do not cover, with the same message shape. */
export function custom<T>(test: (v: unknown) => boolean, expected: string, hint?: string): Check<T> {
  return (v, key, where) => {
    if (!test(v)) throw fail(where, key, expected, v, hint);
    return v as T;
  };
}

/** An object option with options of its own (tls, sandbox, ...): checked by that parser. */
export function nested<S extends Spec, D extends Defaults<S>>(parser: OptionsParser<S, D>): Check<Resolved<S, D>> {
  return (v, key, where) => parser.parse(v, `${where}: ${key}`);
}
