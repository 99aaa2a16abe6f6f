export { createCodec, type Codec, type CodecOptions } from "./codec.ts";
export { DEFAULT_MAX_PAYLOAD, MAX_LEVELS } from "./bounds.ts";
