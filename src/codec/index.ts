export { createCodec, type Codec } from "./codec.ts";
