import { CALL_HEADER, META_HEADER, MIN_VERSION_HEADER, parseCallHeader, parseMetadata, ROLLING_HEADER } from "../call/index.ts";
import { isChunkRef } from "../chunks/index.ts";
import type { Codec } from "../codec/index.ts";
import { BATCH_HEADER, brief, type headersOf, type Inbound } from "../connection/index.ts";
import { CodecError, MethodNotFoundError } from "../errors/index.ts";
import { TRACEPARENT, TRACESTATE } from "../tracing/index.ts";
import { HostedCall } from "./hosted-call.ts";
import { OWNER_LIFECYCLE_METHODS } from "./methods.ts";

const MAX_ARGS = 65_535;
const NO_METADATA: Readonly<Record<string, string>> = Object.freeze({});

/**
 * The headers a host reads from every call message, in one pass over its header block (read
 * with headersOf). A message with the batch header carries several calls (src/connection/batch.ts).
 */
export const CALL_HEADERS = [CALL_HEADER, META_HEADER, BATCH_HEADER, TRACEPARENT, TRACESTATE] as const;
/** A relaying host (a service's registry face) also routes on these: read in the same pass. */
export const RELAY_CALL_HEADERS = [...CALL_HEADERS, MIN_VERSION_HEADER, ROLLING_HEADER] as const;
export type CallHeaders = ReturnType<typeof headersOf<typeof CALL_HEADERS>> | ReturnType<typeof headersOf<typeof RELAY_CALL_HEADERS>>;

/**
 * The call a message carries, given its CALL_HEADERS, or throws a CodecError saying what is
 * wrong with it. `decodeArgs` false (a relaying host) leaves the payload as bytes.
 */
export function parseCall(msg: Inbound, headers: CallHeaders, name: string, codec: Codec, decodeArgs: boolean): HostedCall {
  const [header, metaHeader] = headers;
  if (!header) throw new CodecError(`call to ${name} without its ${CALL_HEADER} header; call through a handle`, { details: { service: name } });
  const h = parseCallHeader(header);
  if (typeof h === "string") throw new CodecError(`malformed call to ${name}: ${h}`, { details: { service: name } });
  const metadata = metaHeader ? parseMetadata(metaHeader) : NO_METADATA;
  // Arguments in chunks are pulled when the call runs, not here: this runs in the socket reader.
  const chunked = decodeArgs && isChunkRef(msg.data);
  const args = decodeArgs && !chunked ? decodeArgList(msg.data, name, codec) : undefined;
  // W3C trace context, relayed as is when no span is made here (headers[3], headers[4]).
  const call = new HostedCall(msg, h.callId, h.method, Date.now() + h.remainingMs, metadata, metaHeader, args, headers[3], headers[4]);
  call.chunked = chunked;
  if (headers.length > CALL_HEADERS.length) {
    call.minVersionHeader = headers[5] ?? "";
    call.rollingHeader = headers[6] ?? "";
  }
  return call;
}

/** A call's encoded argument array, decoded and checked, or a CodecError saying what is wrong. */
export function decodeArgList(bytes: Uint8Array, name: string, codec: Codec): unknown[] {
  const decoded = codec.decode<unknown>(bytes);
  if (!Array.isArray(decoded)) throw new CodecError(`malformed call to ${name}: the payload must be the encoded argument array`, { details: { service: name } });
  // Spreading more would throw RangeError inside the dispatch, reported as if the method threw.
  if (decoded.length > MAX_ARGS) throw new CodecError(`malformed call to ${name}: at most ${MAX_ARGS} arguments per call (got ${decoded.length}); pass an array instead`, { details: { service: name } });
  return decoded;
}

/**
 * Why `method` may not be called on the service, or undefined when it may. `owned` false (an
 * object served with registerInstance()): its lifecycle methods are its owner's alone.
 */
export function refuseMethod(name: string, method: string, methods: ReadonlySet<string>, owned: boolean): MethodNotFoundError | undefined {
  if (methods.has(method)) return undefined;
  const known = [...methods].sort();
  if (!owned && OWNER_LIFECYCLE_METHODS.has(method)) {
    return new MethodNotFoundError(
      `${name}.${method}() is a lifecycle method of an object registered with registerInstance(): only its owner calls it, in its own process; callable: ${known.join(", ") || "no public methods"}`,
      { details: { service: name, method, methods: known, lifecycle: true } },
    );
  }
  return new MethodNotFoundError(
    `${name} has no method "${brief(method, 100)}"; it has ${known.join(", ") || "no public methods"}`,
    { details: { service: name, method: brief(method, 100), methods: known } },
  );
}
