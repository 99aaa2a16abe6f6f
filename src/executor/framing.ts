/**
 * Frames on the Node <-> interpreter channel: a 4-byte big-endian length, then UTF-8 JSON.
 * JSON because the runner must need nothing beyond Python's standard library. The channel is a
 * dedicated socket that user code's prints never reach (see runner.py), so a length prefix is
 * enough: there are no markers to spoof.
 */

/** Larger frames mean the peer is not our runner (or misbehaves): the interpreter is replaced. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

export function encodeFrame(value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value), "utf8");
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

export class FrameError extends Error {}

/** Feeds on socket chunks and hands out whole decoded frames. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** Decoded frames completed by this chunk; throws FrameError on a malformed stream. */
  push(chunk: Buffer): unknown[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: unknown[] = [];
    for (;;) {
      if (this.buffered < 4) return frames;
      const head = this.peek(4);
      const len = head.readUInt32BE(0);
      if (len > MAX_FRAME_BYTES) throw new FrameError(`frame of ${len} bytes exceeds ${MAX_FRAME_BYTES}`);
      if (this.buffered < 4 + len) return frames;
      const all = this.take(4 + len);
      let value: unknown;
      try {
        value = JSON.parse(all.subarray(4).toString("utf8"));
      } catch (err) {
        throw new FrameError(`frame is not JSON: ${(err as Error).message}`);
      }
      frames.push(value);
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
