import { TensorRecordError } from "./errors.ts";

/**
 * Tensor records: the request/response format of the default inference server.
 *
 * A record maps keys to tensors. A tensor is either
 *   - a typed array, read as a 1-D tensor of shape [length], or
 *   - `{ data: TypedArray, shape: number[] }` with data.length === product(shape)
 *     (shape [] is a scalar held in a 1-element array).
 *
 *   { observation: new Float32Array([0.1, 0.2, 0.3, 0.4]) }                    // shape [4]
 *   { pixels: { data: new Uint8Array(2 * 3), shape: [2, 3] }, step: new Int32Array([7]) }
 *
 * `stack(records)` turns B records with the same keys, element types and shapes into a batch:
 * one contiguous typed array per key whose first dimension is the batch, so a model runs one
 * vectorised pass per key instead of B small ones:
 *
 *   { batchSize: B, data: { observation: Float32Array(B * 4) }, shapes: { observation: [B, 4] } }
 *
 * `unstack(batch)` is the inverse: B records, each value a view into the batch's arrays (no
 * copy), 1-D values as bare typed arrays and the others as `{ data, shape }`. A model output
 * only needs `batchSize` or `shapes` (leading dimension = batch) so `unstack` knows where to cut;
 * keys without a shape are cut into equal parts.
 */
export type TypedArray =
  | Int8Array | Uint8Array | Uint8ClampedArray | Int16Array | Uint16Array | Int32Array | Uint32Array
  | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

export interface Tensor {
  readonly data: TypedArray;
  readonly shape: readonly number[];
}

export type TensorValue = TypedArray | Tensor;
export type TensorRecord = Record<string, TensorValue>;

export interface TensorBatch {
  readonly batchSize: number;
  /** One contiguous array per key; item i occupies [i * itemSize, (i + 1) * itemSize). */
  readonly data: Record<string, TypedArray>;
  /** Full shape per key, batch dimension first. */
  readonly shapes: Record<string, number[]>;
}

/** What a model may return for `unstack`: `batchSize` or `shapes` must say how many items. */
export interface TensorBatchLike {
  readonly batchSize?: number;
  readonly data: Record<string, TypedArray>;
  readonly shapes?: Record<string, readonly number[]>;
}

type TypedArrayCtor = new (length: number) => TypedArray;

export function isTypedArray(v: unknown): v is TypedArray {
  return ArrayBuffer.isView(v) && !(v instanceof DataView);
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkShape(shape: unknown, where: string): readonly number[] {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    // Not JSON.stringify: a shape decoded from the wire may hold BigInts, which it throws on.
    const got = Array.isArray(shape) ? `[${shape.slice(0, 8).map((d) => `${typeof d === "bigint" ? `${d}n` : String(d)}`).join(", ")}${shape.length > 8 ? ", ..." : ""}]` : typeof shape;
    throw new TensorRecordError(`${where}: shape must be an array of non-negative integers (got ${got})`);
  }
  return shape;
}

/** Reads one record value as (data, shape), checking that they agree. */
export function asTensor(value: unknown, where: string): { data: TypedArray; shape: readonly number[]; bare: boolean } {
  if (isTypedArray(value)) return { data: value, shape: [value.length], bare: true };
  if (value !== null && typeof value === "object" && isTypedArray((value as Tensor).data)) {
    const t = value as Tensor;
    const shape = checkShape(t.shape, where);
    if (product(shape) !== t.data.length) {
      throw new TensorRecordError(`${where}: shape [${shape.join(", ")}] holds ${product(shape)} elements but data has ${t.data.length}`);
    }
    return { data: t.data, shape, bare: false };
  }
  throw new TensorRecordError(`${where}: expected a typed array or { data: TypedArray, shape: number[] } (got ${describe(value)})`);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a plain array; use a typed array such as Float32Array";
  if (typeof v === "object") {
    // A record decoded from the wire can have its own "constructor" key holding anything.
    const name = (v as object).constructor?.name;
    return typeof name === "string" ? name : "object";
  }
  return typeof v;
}

function dtypeName(a: TypedArray): string {
  return a.constructor.name;
}

export function stack(records: readonly TensorRecord[]): TensorBatch {
  if (!Array.isArray(records)) throw new TensorRecordError(`stack expects an array of records (got ${describe(records)})`);
  const batchSize = records.length;
  const data: Record<string, TypedArray> = {};
  const shapes: Record<string, number[]> = {};
  if (batchSize === 0) return { batchSize, data, shapes };
  const first = records[0]!;
  if (first === null || typeof first !== "object") throw new TensorRecordError(`stack: record 0 is ${describe(first)}, expected an object of tensors`);
  const keys = Object.keys(first);
  for (const key of keys) {
    const t0 = asTensor(first[key], `stack: record 0, key "${key}"`);
    const itemSize = t0.data.length;
    const proto = Object.getPrototypeOf(t0.data);
    const out = new (t0.data.constructor as TypedArrayCtor)(batchSize * itemSize);
    for (let i = 0; i < batchSize; i++) {
      const rec = records[i]!;
      const t = i === 0 ? t0 : asTensor(rec?.[key], `stack: record ${i}, key "${key}"`);
      if (Object.getPrototypeOf(t.data) !== proto) {
        throw new TensorRecordError(`stack: key "${key}" is ${dtypeName(t0.data)} in record 0 but ${dtypeName(t.data)} in record ${i}; convert before submitting`, { details: { key, index: i } });
      }
      if (t.shape.length !== t0.shape.length || t.shape.some((d, j) => d !== t0.shape[j])) {
        throw new TensorRecordError(`stack: key "${key}" has shape [${t0.shape.join(", ")}] in record 0 but [${t.shape.join(", ")}] in record ${i}; pad or split such inputs`, { details: { key, index: i } });
      }
      (out as { set(a: ArrayLike<number | bigint>, o: number): void }).set(t.data, i * itemSize);
    }
    data[key] = out;
    shapes[key] = [batchSize, ...t0.shape];
  }
  for (let i = 1; i < batchSize; i++) {
    const n = Object.keys(records[i] ?? {}).length;
    if (n !== keys.length) {
      const extra = Object.keys(records[i] ?? {}).filter((k) => !(k in first));
      throw new TensorRecordError(`stack: record ${i} has keys [${Object.keys(records[i] ?? {}).join(", ")}] but record 0 has [${keys.join(", ")}]${extra.length ? ` (extra: ${extra.join(", ")})` : ""}`, { details: { index: i } });
    }
  }
  return { batchSize, data, shapes };
}

/** The number of items in a model output, from `batchSize` or else the leading dimension of `shapes`. */
export function batchSizeOf(batch: TensorBatchLike): number {
  if (batch === null || typeof batch !== "object" || batch.data === null || typeof batch.data !== "object") {
    throw new TensorRecordError(`unstack expects { batchSize, data: { key: TypedArray }, shapes? } (got ${describe(batch)})`);
  }
  if (batch.batchSize !== undefined) {
    if (!Number.isInteger(batch.batchSize) || batch.batchSize < 0) throw new TensorRecordError(`unstack: batchSize must be a non-negative integer (got ${String(batch.batchSize)})`);
    return batch.batchSize;
  }
  for (const s of Object.values(batch.shapes ?? {})) {
    if (Array.isArray(s) && s.length > 0) return s[0]!;
  }
  throw new TensorRecordError("unstack cannot tell the batch size: return { batchSize, data } or give shapes with the batch dimension first");
}

export function unstack(batch: TensorBatchLike): TensorRecord[] {
  const n = batchSizeOf(batch);
  const out: TensorRecord[] = Array.from({ length: n }, () => ({}));
  for (const key of Object.keys(batch.data)) {
    const arr = batch.data[key];
    if (!isTypedArray(arr)) throw new TensorRecordError(`unstack: key "${key}" is ${describe(arr)}, expected a typed array`);
    let itemShape: readonly number[];
    const shape = batch.shapes?.[key];
    if (shape !== undefined) {
      checkShape(shape, `unstack: key "${key}"`);
      if (shape[0] !== n) throw new TensorRecordError(`unstack: key "${key}" has leading dimension ${shape[0]} but the batch has ${n} items`, { details: { key } });
      if (product(shape) !== arr.length) throw new TensorRecordError(`unstack: key "${key}" has shape [${shape.join(", ")}] but ${arr.length} elements`, { details: { key } });
      itemShape = shape.slice(1);
    } else {
      if (n === 0 ? arr.length !== 0 : arr.length % n !== 0) {
        throw new TensorRecordError(`unstack: key "${key}" has ${arr.length} elements, not a multiple of the batch size ${n}`, { details: { key } });
      }
      itemShape = [n === 0 ? 0 : arr.length / n];
    }
    const itemSize = product(itemShape);
    for (let i = 0; i < n; i++) {
      const view = arr.subarray(i * itemSize, (i + 1) * itemSize) as TypedArray;
      out[i]![key] = itemShape.length === 1 ? view : { data: view, shape: [...itemShape] };
    }
  }
  return out;
}
