import { Decoder, Encoder, ExtensionCodec } from "@msgpack/msgpack";
import { CodecError } from "../errors/index.ts";
import { decodeTypedArray, encodeTypedArray } from "./typed-arrays.ts";

/**
 * The wire format: msgpack, plus extensions so that what users pass to actors comes back as the
 * same type. Typed arrays, Map, Set, Date (msgpack timestamp) and BigInt (int64) round-trip;
 * `undefined` object fields are dropped and `undefined` values become `null`, as in JSON.
 * Functions, symbols, cycles and out-of-range BigInts are refused with a CodecError before
 * anything is sent.
 */
export interface Codec {
  encode(value: unknown): Uint8Array;
  decode<T = unknown>(bytes: Uint8Array): T;
}

const EXT_TYPED_ARRAY = 1;
const EXT_MAP = 2;
const EXT_SET = 3;

export function createCodec(): Codec {
  const ext = new ExtensionCodec();
  // Encoders and decoders are reused (they keep growable buffers): creating one per message
  // costs more than the encoding itself on small calls.
  let encoder: Encoder;
  let decoder: Decoder;
  ext.register({ type: EXT_TYPED_ARRAY, encode: encodeTypedArray, decode: decodeTypedArray });
  ext.register({
    type: EXT_MAP,
    encode: (v) => (v instanceof Map ? nested().encode([...v]) : null),
    decode: (data) => new Map(nested().decode(data) as [unknown, unknown][]),
  });
  ext.register({
    type: EXT_SET,
    encode: (v) => (v instanceof Set ? nested().encode([...v]) : null),
    decode: (data) => new Set(nested().decode(data) as unknown[]),
  });
  // Extension payloads are encoded with a separate codec pair, because the outer encoder is
  // mid-message when the extension hook runs.
  let inner: { encode(v: unknown): Uint8Array; decode(b: Uint8Array): unknown } | undefined;
  const nested = () => (inner ??= {
    encode: (v) => new Encoder({ extensionCodec: ext, useBigInt64: true, ignoreUndefined: true }).encode(v),
    decode: (b) => new Decoder({ extensionCodec: ext, useBigInt64: true }).decode(b),
  });
  encoder = new Encoder({ extensionCodec: ext, useBigInt64: true, ignoreUndefined: true });
  decoder = new Decoder({ extensionCodec: ext, useBigInt64: true });

  return {
    encode(value) {
      try {
        return encoder.encode(value);
      } catch (err) {
        throw new CodecError(explain(err), { cause: err });
      }
    },
    decode<T>(bytes: Uint8Array): T {
      try {
        return decoder.decode(bytes) as T;
      } catch (err) {
        throw new CodecError(`cannot decode message: ${(err as Error).message}`, { cause: err });
      }
    },
  };
}

function explain(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  if (m.startsWith("Too deep")) return "value is cyclic or nested deeper than 100 levels; send plain data";
  if (m.includes("Function")) return "functions cannot be sent to or from an actor; send plain data";
  if (m.includes("Symbol")) return "symbols cannot be sent to or from an actor; send plain data";
  if (err instanceof RangeError) return `value out of range for the wire format: ${m}`;
  return `value cannot be encoded: ${m}`;
}
