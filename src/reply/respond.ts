import type { Codec } from "../codec/index.ts";
import type { Inbound } from "../connection/index.ts";
import { CodecError } from "../errors/index.ts";
import { encodeErr } from "./replies.ts";

/**
 * Answers `msg` without ever throwing: hosts reply from inside nats.js's socket reader, and a
 * throw there would leave the connection deaf. A reply over the server's max_payload becomes a
 * CodecError saying so (which always fits). Returns why the reply as given was not sent, for the
 * host's log, or undefined when it was.
 */
export function respondSafely(msg: Inbound, bytes: Uint8Array, codec: Codec, maxPayload: number): string | undefined {
  if (!msg.reply) return "no reply subject";
  let out = bytes;
  let problem: string | undefined;
  if (bytes.length > maxPayload) {
    problem = `reply of ${bytes.length} bytes exceeds max_payload ${maxPayload}`;
    out = encodeErr(codec, new CodecError(`the reply of ${bytes.length} bytes exceeds the server's max_payload of ${maxPayload} bytes; return less per call or raise max_payload in nats.conf`, {
      details: { bytes: bytes.length, maxPayload },
    }));
  }
  try {
    msg.respond(out);
  } catch (err) {
    return `cannot reply: ${(err as Error)?.message ?? String(err)}`;
  }
  return problem;
}
