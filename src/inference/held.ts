/**
 * The requests a NatsTransport server holds (received, not answered yet), by client: renewals
 * go out as one message per client, and a cancel names its request by client and seq.
 *
 * Per client a table by seq, rather than one table keyed by "<client> <seq>": no key string is
 * built per request. Requests of one client arrive together (a coalesced batch message) and
 * are answered together, so the last client's table is kept at hand and most adds and removes
 * hash no string at all. A client's table empties and fills again every round trip; empty
 * tables are dropped by `prune()`, which the renewal timer calls, not on every answer.
 */
export interface HeldRequest {
  /** The client's lease subject: who it is, and where renewals go. */
  readonly leaseSubject: string;
  readonly seq: number;
  readonly receivedAt: number;
  readonly leaseMs: number;
}

export class HeldRequests<H extends HeldRequest> {
  private readonly byClient = new Map<string, Map<number, H>>();
  private lastSubject: string | undefined;
  private lastTable: Map<number, H> | undefined;
  /** Requests held now. */
  size = 0;

  /**
   * A request that reuses a seq its client has held (a buggy or hostile client) takes the
   * table entry; the earlier one stays unindexed and its removal is then a no-op.
   */
  add(h: H): void {
    const t = this.table(h.leaseSubject);
    const before = t.size;
    t.set(h.seq, h);
    if (t.size > before) this.size++;
  }

  /** False when `h` was not (or no longer) indexed. */
  remove(h: H): boolean {
    const t = h.leaseSubject === this.lastSubject ? this.lastTable : this.byClient.get(h.leaseSubject);
    if (t === undefined || t.get(h.seq) !== h) return false;
    t.delete(h.seq);
    this.size--;
    return true;
  }

  get(leaseSubject: string, seq: number): H | undefined {
    return this.byClient.get(leaseSubject)?.get(seq);
  }

  /** Each client with requests held, and those requests. */
  clients(): IterableIterator<[string, Map<number, H>]> {
    return this.byClient.entries();
  }

  /** Forgets clients with nothing held: a client that went away must not be kept forever. */
  prune(): void {
    for (const [subject, t] of this.byClient) {
      if (t.size > 0) continue;
      this.byClient.delete(subject);
      if (subject === this.lastSubject) {
        this.lastSubject = undefined;
        this.lastTable = undefined;
      }
    }
  }

  private table(subject: string): Map<number, H> {
    if (subject === this.lastSubject) return this.lastTable!;
    let t = this.byClient.get(subject);
    if (t === undefined) this.byClient.set(subject, (t = new Map()));
    this.lastSubject = subject;
    this.lastTable = t;
    return t;
  }
}
