/**
 * The lease subject a request names, as a NatsTransport server reads it off the wire.
 *
 * Clients send it as UTF-8 bytes (msgpack bin), not as a string: msgpack builds short strings
 * code unit by code unit, which made it the largest allocation of a request's decode. A client's
 * requests come in runs (one coalesced message), so the last subject is kept with its bytes and
 * most requests cost one comparison of a few dozen bytes. A string is accepted too (clients of
 * earlier versions).
 *
 * Only subjects under this server's lease prefix are accepted: renewals are published to them,
 * and a request must not make the server publish anywhere in the account.
 */
const CLIENT_ID = /^[A-Za-z0-9_-]{1,128}$/;
const TD = new TextDecoder();

export class LeaseSubjects {
  private lastBytes: Uint8Array | undefined;
  private lastSubject: string | undefined;

  /** `prefix`: "<inference subject>.lease.", followed by the client's id. */
  constructor(readonly prefix: string) {}

  /** The subject `wire` names, or undefined when it is not one of this server's lease subjects. */
  read(wire: unknown): string | undefined {
    if (wire instanceof Uint8Array) {
      const last = this.lastBytes;
      if (last !== undefined && sameBytes(wire, last)) return this.lastSubject;
      const subject = TD.decode(wire);
      if (!this.valid(subject)) return undefined;
      // A copy: `wire` is a view into the message, which must not be kept alive by this.
      this.lastBytes = wire.slice();
      this.lastSubject = subject;
      return subject;
    }
    if (typeof wire !== "string") return undefined;
    if (wire === this.lastSubject) return this.lastSubject;
    if (!this.valid(wire)) return undefined;
    this.lastBytes = undefined;
    this.lastSubject = wire;
    return wire;
  }

  private valid(subject: string): boolean {
    return subject.startsWith(this.prefix) && CLIENT_ID.test(subject.slice(this.prefix.length));
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
