export { chunksOf, chunksOfTransport, configureChunks, isChunkRef, releaseRef, type Chunks, type ChunkStats, type Outgoing as ChunkedPayload } from "./chunks.ts";
export { CHUNK_CHECKS, DEFAULT_MAX_VALUE_BYTES, type ChunkSettings } from "./options.ts";
export { decodeRef, encodeRef, type ChunkRef } from "./ref.ts";
