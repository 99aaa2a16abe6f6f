export { StreamOpening, isAsyncIterable, DEFAULT_WINDOW, HEARTBEAT_MS } from "./frames.ts";
export { serveStream, type HostStream, type HostStreamParams } from "./host-stream.ts";
export { openRemoteStream, type RemoteStreamParams } from "./remote-stream.ts";
export { materialize, streamable } from "./streamable.ts";
