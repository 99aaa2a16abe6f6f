import type { Codec } from "../codec/index.ts";
import { brief, type Inbound, type RateLimitedLogger } from "../connection/index.ts";
import { CodecError } from "../errors/index.ts";
import { describeOp, encodeErr, encodeOk } from "../reply/index.ts";
import type { Mailbox } from "./mailbox.ts";
import type { ResolvedActorOptions } from "./options.ts";
import type { ControlOp, InstanceInfo } from "./protocol.ts";
import type { ActorStats } from "./stats.ts";

/**
 * A host's control side: ping, stats and stop requests (on its instance subject, and on the
 * service's control subject for plain services), and its callers' cancels.
 */
export interface HostControl {
  onControl(msg: Inbound): void;
  onCancel(msg: Inbound): void;
}

export interface HostControlParams {
  codec: Codec;
  name: string;
  info: InstanceInfo;
  options: ResolvedActorOptions;
  mailbox: Mailbox;
  stats(): ActorStats;
  stop(graceMs: number): Promise<void>;
  /** Called once the host stopped because of a remote stop request (reset) rather than close(). */
  onRemoteStop?: () => void;
  log: RateLimitedLogger;
  where(subject: string): Record<string, unknown>;
  send(msg: Inbound, bytes: Uint8Array, subject: string): void;
}

const utf8 = new TextDecoder();

export function createHostControl(p: HostControlParams): HostControl {
  const { codec, name, info, options, log, where, send } = p;

  const badControl = (msg: Inbound, why: string) => {
    log.warn("malformed control request", { ...where("control"), bytes: msg.data.length, reason: why });
    send(msg, encodeErr(codec, new CodecError(`malformed control request to ${name}: ${why}`, { details: { service: name } })), "control");
  };

  const onControl = (msg: Inbound) => {
    if (!msg.reply) {
      log.warn("control request without reply subject dropped", { ...where("control"), bytes: msg.data.length });
      return;
    }
    let op: ControlOp;
    try {
      op = codec.decode<ControlOp>(msg.data);
    } catch (err) {
      return badControl(msg, brief(err));
    }
    if (op === null || typeof op !== "object" || Array.isArray(op)) return badControl(msg, 'expected { op: "ping" | "stats" | "stop" }');
    switch (op.op) {
      case "ping":
        send(msg, encodeOk(codec, info), "control");
        return;
      case "stats":
        send(msg, encodeOk(codec, { ...info, options, stats: p.stats() }), "control");
        return;
      case "stop": {
        const graceMs = op.graceMs ?? 0;
        if (typeof graceMs !== "number" || !Number.isFinite(graceMs) || graceMs < 0) return badControl(msg, "graceMs must be a finite number of milliseconds >= 0");
        p.stop(graceMs).then(
          () => {
            send(msg, encodeOk(codec, true), "control");
            p.onRemoteStop?.();
          },
          (err) => send(msg, encodeErr(codec, err), "control"),
        );
        return;
      }
      default:
        return badControl(msg, `unknown op ${describeOp((op as { op?: unknown }).op)}`);
    }
  };

  return {
    onControl,
    onCancel: (msg) => p.mailbox.cancel(utf8.decode(msg.data)),
  };
}
