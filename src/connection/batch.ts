import { CodecError } from "../errors/index.ts";
import { replyPrefixOf } from "../subjects/index.ts";
import { headerIn, type Inbound } from "./transport.ts";

/**
 * Coalesced requests and replies: the wire format of several calls in one NATS message.
 *
 * A batch of requests to one subject travels as one message with the header `Ab-Batch: <count>`
 * and the first call's reply subject. Its payload is `count` entries of
 *
 *     u32 token | u16 header length | header block | u32 payload length | payload
 *
 * where the header block is the one the call would carry alone (`NATS/1.0`, its header lines, a
 * blank line) and the token is the last field of the call's own reply subject: the caller's
 * reply prefix plus the token is where that call's answer goes.
 *
 * Replies a host has ready for several calls of one caller leave together as one message to the
 * caller's reply prefix plus token 0 (never a call's token), whose payload is entries of
 *
 *     u32 token | u32 length | reply bytes
 *
 * Integers are big-endian. Lone calls and lone replies are plain messages, as without batching.
 */
export const BATCH_HEADER = "Ab-Batch";
/** The reply token no call has: combined replies are sent to it. */
export const COMBINED_TOKEN = 0;
export const MAX_TOKEN = 0xffff_ffff;

const ENTRY_OVERHEAD = 4 + 2 + 4;
const REPLY_OVERHEAD = 4 + 4;
const TE = new TextEncoder();
const TD = new TextDecoder();

/**
 * One call waiting to be sent in a batch. Its header block stays text until it is written into
 * the batch: encoding each call's headers into bytes of their own would be one more allocation
 * per call, for bytes copied once more anyway.
 */
export interface BatchEntry {
  token: number;
  headerBlock: string;
  /** The header block's length in UTF-8 bytes. */
  headerBytes: number;
  data: Uint8Array;
}

export function batchEntrySize(e: BatchEntry): number {
  return ENTRY_OVERHEAD + e.headerBytes + e.data.length;
}

export function batchHeaderBlock(count: number): Uint8Array {
  return TE.encode(`NATS/1.0\r\n${BATCH_HEADER}: ${count}\r\n\r\n`);
}

export function encodeBatch(entries: readonly BatchEntry[]): Uint8Array {
  let size = 0;
  for (const e of entries) size += batchEntrySize(e);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const e of entries) {
    out.writeUInt32BE(e.token, at);
    out.writeUInt16BE(e.headerBytes, at + 4);
    out.write(e.headerBlock, at + 6, e.headerBytes, "utf8");
    at += 6 + e.headerBytes;
    out.writeUInt32BE(e.data.length, at);
    out.set(e.data, at + 4);
    at += 4 + e.data.length;
  }
  return out;
}

/**
 * One call of a batch, answerable like a message of its own. `rawHeaders` lets headersOf read
 * its header block without a parse of the whole block into a map.
 */
class BatchedMessage implements Inbound {
  constructor(
    readonly subject: string,
    readonly data: Uint8Array,
    readonly reply: string,
    readonly rawHeaders: Uint8Array,
    /** The caller's reply prefix and this call's token in it: replies to one caller combine. */
    readonly replyPrefix: string,
    readonly replyToken: number,
    private readonly publish: (subject: string, data: Uint8Array) => void,
  ) {}

  get headers() {
    const block = TD.decode(this.rawHeaders);
    return { get: (name: string) => headerIn(block, name) };
  }

  respond(data: Uint8Array): boolean {
    this.publish(this.reply, data);
    return true;
  }
}

/**
 * The calls a batch message carries, each answerable on its own. Throws a CodecError when the
 * message is not a well-formed batch (nothing of it is then served).
 */
export function unbatch(msg: Inbound, count: string, maxCount: number, publish: (subject: string, data: Uint8Array) => void): Inbound[] {
  const n = Number(count);
  if (!Number.isInteger(n) || n < 1 || n > maxCount) throw new CodecError(`${BATCH_HEADER} must be a count of 1..${maxCount} calls (got ${JSON.stringify(count.slice(0, 20))})`);
  if (!msg.reply) throw new CodecError("a batch of calls without a reply subject");
  const prefix = replyPrefixOf(msg.reply);
  const data = msg.data;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: Inbound[] = new Array(n);
  let at = 0;
  for (let i = 0; i < n; i++) {
    if (at + 6 > data.length) throw new CodecError(`batch of ${n} calls truncated at call ${i}`);
    const token = view.getUint32(at);
    const hlen = view.getUint16(at + 4);
    at += 6;
    if (at + hlen + 4 > data.length) throw new CodecError(`batch of ${n} calls truncated in the headers of call ${i}`);
    const headers = data.subarray(at, at + hlen);
    at += hlen;
    const dlen = view.getUint32(at);
    at += 4;
    if (at + dlen > data.length) throw new CodecError(`batch of ${n} calls truncated in the payload of call ${i}`);
    if (token === COMBINED_TOKEN) throw new CodecError(`call ${i} of a batch has the reserved reply token 0`);
    out[i] = new BatchedMessage(msg.subject, data.subarray(at, at + dlen), prefix + token, headers, prefix, token, publish);
    at += dlen;
  }
  if (at !== data.length) throw new CodecError(`batch of ${n} calls has ${data.length - at} bytes after its last call`);
  return out;
}

/** Where a reply to `msg` can be combined with others: its caller's prefix, if it came in a batch. */
export function combinable(msg: Inbound): { prefix: string; token: number } | undefined {
  const m = msg as Partial<BatchedMessage>;
  return m.replyPrefix === undefined ? undefined : { prefix: m.replyPrefix, token: m.replyToken! };
}

/**
 * Sends replies, combining those to the same caller into messages of at most `maxPayload`
 * bytes. `single` sends one reply alone (and handles one too large to send).
 */
export function sendReplies(
  items: readonly (readonly [Inbound, Uint8Array])[],
  maxPayload: number,
  publish: (subject: string, data: Uint8Array) => void,
  single: (msg: Inbound, bytes: Uint8Array) => void,
): void {
  let groups: Map<string, [number, Inbound, Uint8Array][]> | undefined;
  for (const [msg, bytes] of items) {
    const c = combinable(msg);
    if (!c || bytes.length + REPLY_OVERHEAD > maxPayload) {
      single(msg, bytes);
      continue;
    }
    groups ??= new Map();
    let g = groups.get(c.prefix);
    if (!g) groups.set(c.prefix, (g = []));
    g.push([c.token, msg, bytes]);
  }
  if (!groups) return;
  for (const [prefix, group] of groups) {
    if (group.length === 1) {
      single(group[0]![1], group[0]![2]);
      continue;
    }
    const flush = (from: number, to: number, size: number) => {
      if (to - from === 1) single(group[from]![1], group[from]![2]);
      else publish(prefix + COMBINED_TOKEN, encodeReplies(group, from, to, size));
    };
    let start = 0;
    let size = 0;
    for (let i = 0; i < group.length; i++) {
      const entry = REPLY_OVERHEAD + group[i]![2].length;
      if (size + entry > maxPayload && i > start) {
        flush(start, i, size);
        start = i;
        size = 0;
      }
      size += entry;
    }
    flush(start, group.length, size);
  }
}

function encodeReplies(group: readonly [number, Inbound, Uint8Array][], from: number, to: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  for (let i = from; i < to; i++) {
    const [token, , bytes] = group[i]!;
    view.setUint32(at, token);
    view.setUint32(at + 4, bytes.length);
    out.set(bytes, at + 8);
    at += 8 + bytes.length;
  }
  return out;
}

/** Calls `each(token, bytes)` for the replies of a combined message; false when it is malformed. */
export function forEachReply(data: Uint8Array, each: (token: number, bytes: Uint8Array) => void): boolean {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let at = 0;
  while (at < data.length) {
    if (at + 8 > data.length) return false;
    const token = view.getUint32(at);
    const len = view.getUint32(at + 4);
    at += 8;
    if (at + len > data.length) return false;
    each(token, data.subarray(at, at + len));
    at += len;
  }
  return true;
}
