import { CodecError } from "../errors/index.ts";

/**
 * The reply `[0, [v0, v1, ...]]` made from replies `[0, v0]`, `[0, v1]`, ... as bytes, without
 * decoding any value: a relay (a service's registry face, rolling an update over its replicas)
 * answers with what the replicas answered, the way it passes on a single reply. Each part must be
 * a plain successful reply (msgpack fixarray of 2, then the integer 0); anything else is a
 * CodecError (errors and stream openings are the relay's to handle before this).
 */
export function combineOkReplies(replies: readonly Uint8Array[]): Uint8Array {
  const n = replies.length;
  const header = n < 16 ? [0x90 | n] : n < 0x10000 ? [0xdc, n >> 8, n & 0xff] : [0xdd, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  let size = 2 + header.length;
  for (const r of replies) {
    if (r.length < 3 || r[0] !== 0x92 || r[1] !== 0x00) throw new CodecError("a reply to combine is not a plain [0, result] reply");
    size += r.length - 2;
  }
  const out = new Uint8Array(size);
  out[0] = 0x92;
  out[1] = 0x00;
  out.set(header, 2);
  let at = 2 + header.length;
  for (const r of replies) {
    out.set(r.subarray(2), at);
    at += r.length - 2;
  }
  return out;
}
