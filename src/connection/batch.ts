import { CodecError } from "../errors/index.ts";
import { replyPrefixOf } from "../subjects/index.ts";
import { headerIn, utf8Slice, type Inbound } from "./transport.ts";

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
 * One call of a batch, answerable like a message of its own. Its header block stays where it
 * came, in the batch (headersOf reads it there): no view and no map per call. Its reply
 * subject is made only when the reply leaves alone; combined replies need just the token.
 */
class BatchedMessage implements Inbound {
  constructor(
    readonly subject: string,
    readonly data: Uint8Array,
    /** The batch payload and where this call's header block lies in it. */
    private readonly batch: Uint8Array,
    private readonly headersAt: number,
    private readonly headersEnd: number,
    /** The caller's reply prefix and this call's token in it: replies to one caller combine. */
    readonly replyPrefix: string,
    readonly replyToken: number,
    private readonly publish: (subject: string, data: Uint8Array) => void,
  ) {}

  get reply(): string {
    return this.replyPrefix + this.replyToken;
  }

  get headerBlock(): string {
    return utf8Slice(this.batch, this.headersAt, this.headersEnd);
  }

  get headers() {
    const block = this.headerBlock;
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
    const headersAt = at;
    at += hlen;
    const dlen = view.getUint32(at);
    at += 4;
    if (at + dlen > data.length) throw new CodecError(`batch of ${n} calls truncated in the payload of call ${i}`);
    if (token === COMBINED_TOKEN) throw new CodecError(`call ${i} of a batch has the reserved reply token 0`);
    out[i] = new BatchedMessage(msg.subject, data.subarray(at, at + dlen), data, headersAt, headersAt + hlen, prefix, token, publish);
    at += dlen;
  }
  if (at !== data.length) throw new CodecError(`batch of ${n} calls has ${data.length - at} bytes after its last call`);
  return out;
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
  let groups: Map<string, (readonly [Inbound, Uint8Array])[]> | undefined;
  for (const item of items) {
    const [msg, bytes] = item;
    // Only a call that came in a batch has a prefix its reply can be combined under.
    const prefix = (msg as Partial<BatchedMessage>).replyPrefix;
    if (prefix === undefined || bytes.length + REPLY_OVERHEAD > maxPayload) {
      single(msg, bytes);
      continue;
    }
    groups ??= new Map();
    let g = groups.get(prefix);
    if (!g) groups.set(prefix, (g = []));
    g.push(item);
  }
  if (!groups) return;
  for (const [prefix, group] of groups) {
    if (group.length === 1) {
      single(group[0]![0], group[0]![1]);
      continue;
    }
    const flush = (from: number, to: number, size: number) => {
      if (to - from === 1) single(group[from]![0], group[from]![1]);
      else publish(prefix + COMBINED_TOKEN, encodeReplies(group, from, to, size));
    };
    let start = 0;
    let size = 0;
    for (let i = 0; i < group.length; i++) {
      const entry = REPLY_OVERHEAD + group[i]![1].length;
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

function encodeReplies(group: readonly (readonly [Inbound, Uint8Array])[], from: number, to: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  for (let i = from; i < to; i++) {
    const [msg, bytes] = group[i]!;
    view.setUint32(at, (msg as BatchedMessage).replyToken);
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
