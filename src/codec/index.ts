export { createCodec, type Allocate, type Codec, type CodecOptions, type EncodeLimit } from "./codec.ts";
export { DEFAULT_MAX_PAYLOAD, MAX_LEVELS } from "./bounds.ts";
