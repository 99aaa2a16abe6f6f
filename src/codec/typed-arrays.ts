/**
 * Typed arrays travel as a msgpack extension: one tag byte for the element type, then the raw
 * little-endian bytes. Decoding copies into a fresh, aligned buffer: views over the receive
 * buffer would be misaligned for 4- and 8-byte elements and would pin the whole message.
 */
type TypedArrayCtor =
  | Int8ArrayConstructor | Uint8ClampedArrayConstructor | Int16ArrayConstructor | Uint16ArrayConstructor
  | Int32ArrayConstructor | Uint32ArrayConstructor | Float32ArrayConstructor | Float64ArrayConstructor
  | BigInt64ArrayConstructor | BigUint64ArrayConstructor;

/** The msgpack extension type typed arrays travel as (codec.ts registers it; small.ts writes and reads it too). */
export const EXT_TYPED_ARRAY = 1;

// Uint8Array is absent on purpose: msgpack's bin type already round-trips it.
const KINDS: TypedArrayCtor[] = [
  Int8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
  Float32Array, Float64Array, BigInt64Array, BigUint64Array,
];

/** The element types by the tag they travel with. */
export const TYPED_ARRAY_KINDS: readonly TypedArrayCtor[] = KINDS;

const tagOf = new Map<unknown, number>(KINDS.map((k, i) => [k.prototype, i]));

/** The tag of a typed array whose prototype is `proto`; undefined for any other prototype (Uint8Array's, Buffer's, a subclass's). */
export function typedArrayTagOfPrototype(proto: unknown): number | undefined {
  return tagOf.get(proto);
}

/** Typed arrays up to this many bytes are staged in the encoder's own buffer (see below). */
const STAGE_BYTES = 64 * 1024;

/**
 * Typed arrays at least this large are left out of msgpack's buffer (codec.ts, encode()): msgpack
 * writes their extension as ext 32 anyway (over 0xffff bytes), whose header is patched afterwards.
 */
export const SPLICE_BYTES = STAGE_BYTES;

/** The element-type tag a typed array travels with; undefined for anything else (Uint8Array, DataView). */
export function typedArrayTag(input: object): number | undefined {
  return ArrayBuffer.isView(input) ? tagOf.get(Object.getPrototypeOf(input)) : undefined;
}

/** One byte arrays holding each tag: what a spliced array leaves in msgpack's buffer. */
export const TAG_BYTES: readonly Uint8Array[] = KINDS.map((_, i) => Uint8Array.of(i));

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

/** Arrays this large may be views into a buffer their message owns alone (see decodeTypedArray). */
const VIEW_BYTES = 1024 * 1024;

/**
 * `owned`: the message's buffer belongs to this decode alone (a value assembled from chunks), so
 * a large array whose bytes are aligned there is a view rather than a copy: pinning the buffer
 * costs little when the array is most of it.
 */
export function decodeTypedArray(data: Uint8Array, owned = false): ArrayBufferView {
  const ctor = KINDS[data[0]!];
  if (!ctor) throw new Error(`unknown typed array tag ${data[0]}`);
  const n = data.byteLength - 1;
  if (owned && n >= VIEW_BYTES && (data.byteOffset + 1) % ctor.BYTES_PER_ELEMENT === 0 && 2 * n >= data.buffer.byteLength) {
    return new ctor(data.buffer as ArrayBuffer, data.byteOffset + 1, n / ctor.BYTES_PER_ELEMENT);
  }
  // An explicit copy: data may be a Node Buffer, whose slice() is a view into a shared pool.
  const bytes = new Uint8Array(data.byteLength - 1);
  bytes.set(data.subarray(1));
  return new ctor(bytes.buffer, 0, bytes.byteLength / ctor.BYTES_PER_ELEMENT);
}

/**
 * Where the elements of the typed array start in a message that is `[typedArray, ...]` (a call's
 * arguments) or `[0, typedArray]` (a reply), read from its first bytes; undefined for any other
 * message. A receiver assembling such a message places it so that they land aligned.
 */
export function typedArrayDataOffset(head: Uint8Array, extType: number): number | undefined {
  let at: number;
  if (head[0] === 0x92 && head[1] === 0x00) at = 2;
  else if (head[0]! >= 0x91 && head[0]! <= 0x9f) at = 1;
  else return undefined;
  const f = head[at];
  // ext 8, 16, 32: format byte, 1/2/4 length bytes, then the type.
  const header = f === 0xc7 ? 3 : f === 0xc8 ? 4 : f === 0xc9 ? 6 : 0;
  if (!header || head[at + header - 1] !== extType) return undefined;
  const tag = head[at + header];
  if (tag === undefined || !KINDS[tag]) return undefined;
  return at + header + 1;
}
