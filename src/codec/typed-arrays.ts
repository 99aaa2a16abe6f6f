/**
 * Typed arrays travel as a msgpack extension: one tag byte for the element type, then the raw
 * little-endian bytes. Decoding copies into a fresh, aligned buffer: views over the receive
 * buffer would be misaligned for 4- and 8-byte elements and would pin the whole message.
 */
type TypedArrayCtor =
  | Int8ArrayConstructor | Uint8ClampedArrayConstructor | Int16ArrayConstructor | Uint16ArrayConstructor
  | Int32ArrayConstructor | Uint32ArrayConstructor | Float32ArrayConstructor | Float64ArrayConstructor
  | BigInt64ArrayConstructor | BigUint64ArrayConstructor;

// Uint8Array is absent on purpose: msgpack's bin type already round-trips it.
const KINDS: TypedArrayCtor[] = [
  Int8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
  Float32Array, Float64Array, BigInt64Array, BigUint64Array,
];

const tagOf = new Map<unknown, number>(KINDS.map((k, i) => [k.prototype, i]));

/** Typed arrays up to this many bytes are staged in the encoder's own buffer (see below). */
const STAGE_BYTES = 64 * 1024;

/**
 * The encode hook of the extension, for one codec. msgpack copies an extension's bytes into its
 * output as soon as the hook returns, before it encodes anything else, so a typed array is
 * staged in one buffer this hook keeps rather than in a new allocation each: an ArrayBuffer of
 * its own per typed array sent was a measurable part of a call's CPU and garbage. Nested
 * encoders (Map, Set, Error payloads) use the stage only after the outer one has copied it out.
 * Larger arrays get a buffer of their own, so the stage never grows.
 */
export function typedArrayEncoder(): (input: unknown) => Uint8Array | null {
  let stage: Uint8Array | undefined;
  return (input) => {
    if (!ArrayBuffer.isView(input) || input instanceof DataView) return null;
    const tag = tagOf.get(Object.getPrototypeOf(input));
    if (tag === undefined) return null;
    const size = 1 + input.byteLength;
    let out: Uint8Array;
    if (size > STAGE_BYTES) out = new Uint8Array(size);
    else out = (stage ??= new Uint8Array(STAGE_BYTES)).subarray(0, size);
    out[0] = tag;
    out.set(new Uint8Array(input.buffer, input.byteOffset, input.byteLength), 1);
    return out;
  };
}

export function decodeTypedArray(data: Uint8Array): ArrayBufferView {
  const ctor = KINDS[data[0]!];
  if (!ctor) throw new Error(`unknown typed array tag ${data[0]}`);
  // An explicit copy: data may be a Node Buffer, whose slice() is a view into a shared pool.
  const bytes = new Uint8Array(data.byteLength - 1);
  bytes.set(data.subarray(1));
  return new ctor(bytes.buffer, 0, bytes.byteLength / ctor.BYTES_PER_ELEMENT);
}
