/**
 * Frames on the Node <-> interpreter channel: a 4-byte big-endian length, then UTF-8 JSON.
 * JSON because the runner must need nothing beyond Python's standard library. The channel is a
 * dedicated socket that user code's prints never reach (see runner.py), so a length prefix is
 * enough: there are no markers to spoof.
 */

/** Larger frames mean the peer is not our runner (or misbehaves): the interpreter is replaced. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

export function encodeFrame(value: unknown): Buffer {
  // The JSON written straight after its length: one buffer, no copy.
  const json = JSON.stringify(value);
  const n = Buffer.byteLength(json, "utf8");
  const out = Buffer.allocUnsafe(4 + n);
  out.writeUInt32BE(n, 0);
  out.write(json, 4, "utf8");
  return out;
}

export class FrameError extends Error {}

function parseFrame(json: string): unknown {
  try {
    return JSON.parse(json);
  } catch (err) {
    throw new FrameError(`frame is not JSON: ${(err as Error).message}`);
  }
}

/** Feeds on socket chunks and hands out whole decoded frames. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** Decoded frames completed by this chunk; throws FrameError on a malformed stream. */
  push(chunk: Buffer): unknown[] {
    // The usual chunk: exactly one whole frame (a reply is written in one write), read in place.
    if (this.buffered === 0 && chunk.length >= 4) {
      const len = chunk.readUInt32BE(0);
      if (len + 4 === chunk.length && len <= MAX_FRAME_BYTES) return [parseFrame(chunk.toString("utf8", 4))];
    }
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: unknown[] = [];
    for (;;) {
      if (this.buffered < 4) return frames;
      const head = this.peek(4);
      const len = head.readUInt32BE(0);
      if (len > MAX_FRAME_BYTES) throw new FrameError(`frame of ${len} bytes exceeds ${MAX_FRAME_BYTES}`);
      if (this.buffered < 4 + len) return frames;
      frames.push(parseFrame(this.take(4 + len).toString("utf8", 4)));
    }
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    const whole = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const rest = whole.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return whole.subarray(0, n);
  }
}
